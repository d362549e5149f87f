/*
 * Await chains: what a future is waiting on, decoded from its async state
 * machines. From a future (or a task's Stage), the chain of .awaits down:
 * per level, the suspend state of an async body (its name, the .await's
 * file and line, the future it awaits and where, the guards, permits,
 * channel ends and JoinHandles it holds), going through boxes and wrappers
 * (value/future.c), and ending in the innermost awaited future that is no
 * async body (the leaf), or in the futures a select!/join! polls together
 * (the last level's children, each with a chain of its own).
 *
 * A decoder remembers what each (type, discriminant) of one program means,
 * and what the caller configured: which awaitees make a chain particular to
 * its task, which one is marked, which future tags a level. A chain with
 * nothing particular to its task is `shared`: its key is the same for every
 * chain with the same levels, states and tags, so a caller can keep one copy
 * of it per key. Reads through the program; never raises.
 */
#ifndef TD_VALUE_CHAIN_H
#define TD_VALUE_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "value/value.h"

#define TD_CHAIN_DEPTH 64        /* levels of one chain */
#define TD_CHAIN_MAX_HOLDS 8     /* held values named per state */
#define TD_CHAIN_CHILDREN 16     /* branches of one select!/join! read */
#define TD_CHAIN_TREE_DEPTH 4    /* trees inside trees */

/* A held value of a suspended state: a guard, a permit, a channel end, a JoinHandle. */
struct td_chain_hold {
	uint64_t type;             /* its type's DIE offset */
	uint64_t offset;           /* from the state machine's start */
	const char *name;          /* the variable, or NULL */
};

/* What one suspend state of an async body means: decoded once per (type, discriminant). */
struct td_chain_state {
	uint64_t type;             /* the state machine's type (DIE offset) */
	uint64_t discr;
	const char *name, *file;   /* the state's name (Suspend0, Unresumed...); the .await's file, or NULL */
	int line;                  /* 0: unknown */
	bool in_macro;             /* declared in another file than its async fn: an .await in select!/join! */
	bool own;                  /* the program's own code, not a dependency's */
	bool has_awaitee;
	bool per_task;             /* it awaits a future td_chain_decoder_per_task names */
	bool marked;               /* it awaits a future td_chain_decoder_mark names */
	Dwarf_Die awaitee_type;
	uint64_t awaitee_offset;   /* from the state machine's start */
	int nholds;
	struct td_chain_hold holds[TD_CHAIN_MAX_HOLDS];
};

struct td_chain_level {
	const struct td_chain_state *state;
	uint64_t addr;             /* the state machine's address */
	uint64_t tag;              /* the tag of the future this level awaits, or 0 */
};

struct td_chain;

/* One future of a fork: the chain of the async body in it, or the leaf it is. */
struct td_chain_child {
	uint64_t elem;             /* the child future's type (DIE offset) */
	const struct td_chain *chain;  /* NULL: it holds no async body */
	uint64_t leaf;             /* the innermost future that is no async body, or 0 */
	uint64_t leaf_type;        /* without a chain: the leaf's type */
	const char *variant;       /* without a chain: the enum variant the leaf is in (MaybeDone's Done), or NULL */
};

struct td_chain {
	int depth;
	struct td_chain_level levels[TD_CHAIN_DEPTH];
	/*
	 * Nothing in it is particular to its task (no held value, no per-task
	 * awaitee, no children, no error): the same key means the same chain.
	 */
	bool shared;
	const char *key;
	size_t key_len;
	uint64_t leaf;             /* the innermost awaited future that is no async body, or 0 */
	uint64_t leaf_type;        /* a future holding no async body is its own leaf: its type (depth 0) */
	uint64_t root_tag;         /* the tag of the future the chain starts from, or 0 */
	uint64_t tagged;           /* where the outermost tagged future keeps its path's first field, or 0 */
	uint64_t marked;           /* where the outermost marked awaitee is, or 0 */
	int nchildren;             /* the last level's awaitee polls these together */
	const struct td_chain_child *children;
	const char *error;         /* decoding stopped here (the levels above are good), or NULL */
};

struct td_chain_decoder;

/* A decoder for prog's futures; destroy it before prog. */
struct td_error *td_chain_decoder_create(struct td_program *prog, struct td_chain_decoder **ret);
void td_chain_decoder_destroy(struct td_chain_decoder *dec);

/*
 * Configuration, before the first chain is built (states are decoded once).
 * per_task: chains awaiting a future whose DWARF name begins with name are
 * never shared (up to 8 names; a name given again is ignored). mark: an
 * awaitee whose DWARF name begins with prefix is marked (one prefix). tag: a
 * future whose type path begins with prefix tags the level awaiting it (or
 * the chain's root) with the word at path[] (1 to 8 member names) inside it.
 * TD_ERR_USAGE if the limits are passed.
 */
struct td_error *td_chain_decoder_per_task(struct td_chain_decoder *dec, const char *name);
struct td_error *td_chain_decoder_mark(struct td_chain_decoder *dec, const char *prefix);
struct td_error *td_chain_decoder_tag(struct td_chain_decoder *dec, const char *prefix, const char *const *path,
				      int npath);

/*
 * The chain of future v (a box of one is looked into). *ret and all it points
 * to belong to the decoder, valid until the next td_chain_build* call. Only
 * an allocation failure is an error; a chain that cannot be decoded further
 * says so in ret->error.
 */
struct td_error *td_chain_build(struct td_chain_decoder *dec, struct td_value v, const struct td_chain **ret);

/*
 * The chain of the future a task's Stage<T> at addr runs. If it is not
 * Running, or cannot be read, *ret is NULL and *reason says why (the
 * variant's name, or the error; the decoder's, valid as *ret is).
 */
struct td_error *td_chain_build_stage(struct td_chain_decoder *dec, Dwarf_Die *stage_type, uint64_t addr,
				      const struct td_chain **ret, const char **reason);

/*
 * A column of tasks (tokio's owned list, read into arrays): one chain per
 * task, found through its vtable's Stage type and the Stage's offset in the
 * task. The caller tells the column each new vtable's stage when asked
 * (TD_CHAIN_TASK_NEED_STAGE), then asks again.
 */
#define TD_CHAIN_STAGES 256
struct td_chain_column {
	struct td_chain_decoder *dec;
	uint64_t skip_mask;        /* a task whose state word has one of these bits has no chain */
	long tagged_left, marked_left;
	int nstages;
	struct { uint64_t vtable; bool has; Dwarf_Die type; uint64_t offset; } stages[TD_CHAIN_STAGES];
};

enum td_chain_task_result {
	TD_CHAIN_TASK_SKIPPED,     /* skipped by its state, or its vtable has no stage */
	TD_CHAIN_TASK_NEED_STAGE,  /* tell td_chain_column_stage this vtable's stage, then ask again */
	TD_CHAIN_TASK_CHAIN,       /* *ret is its chain */
	TD_CHAIN_TASK_REASON,      /* no chain: *reason says why */
};

/* tagged_max, marked_max: how many tasks get their chain's tagged and marked addresses. */
void td_chain_column_init(struct td_chain_column *col, struct td_chain_decoder *dec, uint64_t skip_mask,
			  long tagged_max, long marked_max);
/* The Stage type of tasks with this vtable and its offset in the task; type NULL: they have no chain. */
void td_chain_column_stage(struct td_chain_column *col, uint64_t vtable, Dwarf_Die *type, uint64_t offset);
/*
 * One task: its node's address, vtable and state word. *ret, *reason as
 * td_chain_build_stage's; *tagged and *marked: the chain's, or 0 once the
 * column's first tagged_max (marked_max) tasks with one got theirs.
 */
struct td_error *td_chain_column_task(struct td_chain_column *col, uint64_t node, uint64_t vtable, uint64_t state,
				      enum td_chain_task_result *result, const struct td_chain **ret,
				      const char **reason, uint64_t *tagged, uint64_t *marked);

/*
 * For a level in_macro (an .await written inside select! or join!): the
 * user's line that calls the macro (td_future_macro_site), from the state
 * machine's type id and the state's name. A DWARF search: after the stop.
 */
bool td_chain_macro_site(struct td_program *prog, uint64_t type, const char *state, const char **ret_file,
			 int *ret_line);

#endif
