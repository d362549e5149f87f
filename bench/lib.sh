# Shared by bench/ scripts (sourced): ending children safely, medians.

# Whether process $1 is gone (or a zombie: dead, only not reaped yet).
gone() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  [[ -z $state || $state == Z* ]]
}

# Ends the children: TERM, then KILL for any still there after 2 s (a
# process stopped or traced does not act on TERM). Never waits without a bound.
stop_children() {
  local kids=("$@") k alive
  ((${#kids[@]})) || return 0
  kill -TERM "${kids[@]}" 2>/dev/null
  for _ in $(seq 40); do
    alive=0
    for k in "${kids[@]}"; do gone "$k" || alive=1; done
    ((alive)) || return 0
    sleep 0.05
  done
  kill -KILL "${kids[@]}" 2>/dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
