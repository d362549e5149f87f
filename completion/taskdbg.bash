# bash completion for taskdbg(1): its commands, each command's options and
# their arguments, process ids of programs that run a tokio runtime, and core
# files.
#
# Nothing here lists commands or options: they are read, at each completion,
# from the help texts of the very taskdbg being completed (`taskdbg --help`,
# `taskdbg CMD --help`), so completion cannot drift from what it accepts.
# An argument is completed by its name in the help: PID, TARGET (a PID or a
# core file), CORE, DIR, NAME.EXT (files of that extension), FILE (the
# extensions its option's text names, if any), PATH; `--mode a|b|c` in a
# usage line offers a, b and c.

# Process ids of the programs that run a tokio runtime: a thread named as
# tokio names its workers ("tokio-runtime-worker", cut to 15 characters), or,
# among the user's own processes, an executable with tokio's runtime in it (a
# runtime with threads named otherwise, a current_thread runtime): its
# symbols, or, stripped, the source paths of its panic messages. None: every
# process of the user.
_taskdbg_pids()
{
    local -
    set +f    # /proc/[0-9]*/exe below
    local -A seen=() exe_of=() one_of=() tokio=()
    local pid comm exe file
    while read -r pid comm; do
        [[ $comm == tokio-runtime-w* ]] && seen[$pid]=1
    done < <(ps -eL -o pid=,comm= 2>/dev/null)
    # The user's processes and their executables, in one find (no fork per process).
    while read -r pid exe; do
        [[ -n $exe ]] || continue
        pid=${pid#/proc/}
        exe_of[$pid]=$exe
        one_of[$exe]=$pid
    done < <(find /proc/[0-9]*/exe -maxdepth 0 -user "$EUID" -printf '%h %l\n' 2>/dev/null)
    # Each executable read once, all in one grep, through a process that runs it
    # (/proc/PID/exe: also an executable deleted or replaced since).
    local files=()
    for exe in "${!one_of[@]}"; do
        files+=("/proc/${one_of[$exe]}/exe")
    done
    if ((${#files[@]})); then
        while read -r file; do
            file=${file#/proc/}
            tokio[${exe_of[${file%/exe}]}]=1
        done < <(grep -lsaE 'tokio[^/]*/src/runtime/|5tokio7runtime' -- "${files[@]}")
    fi
    for pid in "${!exe_of[@]}"; do
        [[ -n ${tokio[${exe_of[$pid]}]-} ]] && seen[$pid]=1
    done
    if ((${#seen[@]} == 0)); then
        for pid in "${!exe_of[@]}"; do
            seen[$pid]=1
        done
    fi
    unset -v 'seen[$$]' 'seen[$BASHPID]'
    compgen -W "${!seen[*]}" -- "$cur"
}

# Files under $cur whose names match the extended pattern $1 (all if empty)
# and not $2 (if given), and directories.
_taskdbg_files()
{
    local f
    compopt -o filenames 2>/dev/null
    while IFS= read -r f; do
        if [[ -d $f ]]; then
            COMPREPLY+=("$f")
        elif [[ -z $1 || ${f##*/} == $1 ]] && [[ -z ${2-} || ${f##*/} != $2 ]]; then
            COMPREPLY+=("$f")
        fi
    done < <(compgen -f -- "$cur")
}

# Core files: as the kernel (core, core.PID, core.NAME), gcore and taskdbg
# dump, and systemd-coredump (compressed) name them; not a source file core.c.
_taskdbg_cores()
{
    _taskdbg_files '@(core|core.*|*.core|*.zst|*.xz|*.lz4)' '*.@(c|h|o|rs|py|lua|md|txt|json|svg|folded)'
}

# Completes $cur as the argument named $1 ($2: the text of its option, if any).
_taskdbg_argument()
{
    local name=$1 text=$2 exts
    case $name in
    PID) COMPREPLY+=($(_taskdbg_pids)) ;;
    TARGET) COMPREPLY+=($(_taskdbg_pids)); _taskdbg_cores ;;
    CORE) _taskdbg_cores ;;
    DIR)
        compopt -o filenames 2>/dev/null
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -d -- "$cur")
        ;;
    *.[a-z]*) _taskdbg_files "*.${name##*.}" ;;
    FILE)
        # "(.folded, .svg or .json)": the extensions the option names.
        exts=$(grep -oE '\.[a-z]+\b' <<<"$text" | tr -d . | paste -sd '|')
        if [[ -n $exts ]]; then
            _taskdbg_files "*.@($exts)"
        else
            _taskdbg_files ''
        fi
        ;;
    PATH | EXE | ARG*) _taskdbg_files '' ;;
    esac
}

# COMPREPLY for COMP_WORDS, COMP_CWORD (bash's completion function for taskdbg).
_taskdbg()
{
    # No globbing (usage words such as [--json] are patterns); extglob for the
    # name patterns, the user's setting restored after.
    local -
    set -f
    local restore_extglob
    restore_extglob=$(shopt -p extglob)
    shopt -s extglob
    COMPREPLY=()
    _taskdbg_complete
    eval "$restore_extglob"
    return 0
}

_taskdbg_complete()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local exe=${COMP_WORDS[0]} cmd=${COMP_WORDS[1]-}
    [[ $exe == "~/"* ]] && exe=$HOME/${exe#"~/"}

    if ((COMP_CWORD == 1)); then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '--help --version' -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$("$exe" --help 2>/dev/null |
                awk '/^commands:$/ { on = 1; next } on && !NF { exit } on { print $1 }')" -- "$cur"))
        fi
        return
    fi

    local help
    help=$("$exe" "$cmd" --help 2>/dev/null) || return

    # The options: "  -o, --output FILE    text" -> names, their argument and text.
    local -A arg_of=() text_of=()
    local line head text names=() n word argname
    while IFS= read -r line; do
        [[ $line == "  -"* ]] || continue
        line=${line#  }
        if [[ $line == *"  "* ]]; then
            head=${line%%  *}
            text=${line#*  }
        else
            head=$line text=
        fi
        argname=
        for word in ${head//,/ }; do
            [[ $word == -* ]] || argname=$word
        done
        for word in ${head//,/ }; do
            if [[ $word == -* ]]; then
                names+=("$word")
                arg_of[$word]=$argname
                text_of[$word]=$text
            fi
        done
    done <<<"$help"

    # The usage forms, each on one line ("usage: taskdbg CMD ...", continued on indented lines).
    local -a forms=()
    while IFS= read -r line; do
        [[ -z $line ]] && break
        line=${line#usage:}
        line=${line##+( )}
        if [[ $line == taskdbg\ * ]]; then
            forms+=("$line")
        elif ((${#forms[@]})); then
            forms[-1]+=" $line"
        fi
    done <<<"$help"

    # An option's argument: the word after it (or after "--opt=").
    local opt=
    if [[ $prev == -* && -n ${arg_of[$prev]-} ]]; then
        opt=$prev
    elif [[ $prev == = && ${COMP_WORDS[COMP_CWORD - 2]} == --* && -n ${arg_of[${COMP_WORDS[COMP_CWORD - 2]}]-} ]]; then
        opt=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    if [[ -n $opt ]]; then
        local form choices=
        for form in "${forms[@]}"; do
            [[ $form =~ (^|[[ ])$opt\ ([a-z0-9]+(\|[a-z0-9]+)+) ]] && choices=${BASH_REMATCH[2]}
        done
        if [[ -n $choices ]]; then
            COMPREPLY=($(compgen -W "${choices//|/ }" -- "$cur"))
        else
            _taskdbg_argument "${arg_of[$opt]}" "${text_of[$opt]}"
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${names[*]}" -- "$cur"))
        return
    fi

    # A positional argument: which one, and which usage form (the one whose
    # options the line has, e.g. record --diff).
    local i given=() used=" "
    for ((i = 2; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == -* ]]; then
            used+="${word%%=*} "
            [[ -n ${arg_of[$word]-} ]] && ((i++))
        elif [[ $word != = ]]; then
            given+=("$word")
        fi
    done
    local best=${forms[0]-} best_score=0 score form
    for form in "${forms[@]}"; do
        score=0
        for word in $form; do
            word=${word//[][]/}
            [[ $word == -* && $used == *" $word "* ]] && ((score++))
        done
        ((score > best_score)) && best=$form best_score=$score
    done
    # Its positional names: words after "taskdbg CMD" that are neither options nor their arguments.
    local positionals=() skip=0
    for word in ${best#taskdbg "$cmd"}; do
        if ((skip)); then
            skip=0
            continue
        fi
        word=${word//[][]/}
        if [[ $word == -* ]]; then
            [[ -n ${arg_of[${word%%=*}]-} ]] && skip=1
            continue
        fi
        [[ $word == +([A-Z0-9_]).+([a-z]) || $word == +([A-Z0-9_])?(...) ]] && positionals+=("$word")
    done
    n=${#given[@]}
    if ((n < ${#positionals[@]})); then
        _taskdbg_argument "${positionals[n]%...}" ''
    elif ((${#positionals[@]})) && [[ ${positionals[-1]} == *... ]]; then
        _taskdbg_argument "${positionals[-1]%...}" ''
    fi
}

complete -F _taskdbg taskdbg
