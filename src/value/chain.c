/*
 * Await chains (see chain.h): each level is a discriminant read and a cached
 * lookup of what that state means; the descent through boxes and wrappers,
 * forks and children is value/future.c's.
 */
#include "value/chain.h"

#include <dwarf.h>
#include <stdlib.h>
#include <string.h>

#include "value/future.h"
#include "value/program.h"

#define TD_CHAIN_CACHE 4096      /* decoded states per program */
#define TD_CHAIN_PER_TASK 8
#define TD_CHAIN_TAG_PATH 8
#define SCRATCH_BLOCK (64 * 1024)

/* Type names of held values: a prefix ending in '<' (generic types), else the whole name. */
static const char *const held_kinds[] = {
	"JoinHandle<", "MutexGuard<", "OwnedMutexGuard<", "RwLockReadGuard<", "RwLockWriteGuard<",
	"SemaphorePermit", "OwnedSemaphorePermit", "Sender<", "Receiver<", "UnboundedSender<",
	"UnboundedReceiver<", NULL,
};

/* Memory for what one build returns: reused by the next build, so nothing is freed per chain. */
struct scratch_block {
	struct scratch_block *next;
	size_t size, used;
	max_align_t data[];
};

struct td_chain_decoder {
	struct td_program *prog;
	struct td_chain_state *cache;   /* TD_CHAIN_CACHE states; pointers into it stay valid */
	size_t ncache;
	char *per_task[TD_CHAIN_PER_TASK];
	int nper_task;
	char *mark_prefix;
	char *tag_prefix;
	char *tag_path[TD_CHAIN_TAG_PATH];
	int ntag_path;
	uint64_t untagged[512];         /* type DIE offsets that can hold no tagged future (direct-mapped) */
	struct { uint64_t type, first, word; } tag_offsets[64];  /* per tagged type: its path's offsets */
	struct scratch_block *scratch, *current;
};

static void scratch_reset(struct td_chain_decoder *dec)
{
	dec->current = dec->scratch;
	if (dec->current)
		dec->current->used = 0;
}

static void *scratch_alloc(struct td_chain_decoder *dec, size_t size)
{
	size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	struct scratch_block *b = dec->current;
	while (b && b->used + size > b->size) {
		b = b->next;
		if (b)
			b->used = 0;
	}
	if (!b) {
		size_t bsize = size > SCRATCH_BLOCK ? size : SCRATCH_BLOCK;
		if (!(b = malloc(sizeof(*b) + bsize)))
			return NULL;
		*b = (struct scratch_block){ .size = bsize };
		/* Appended after the current block: blocks are used in list order. */
		struct scratch_block **at = dec->current ? &dec->current->next : &dec->scratch;
		b->next = *at;
		*at = b;
	}
	dec->current = b;
	void *p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

static const char *scratch_strdup(struct td_chain_decoder *dec, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = scratch_alloc(dec, n);
	return p ? memcpy(p, s, n) : "out of memory";
}

struct td_error *td_chain_decoder_create(struct td_program *prog, struct td_chain_decoder **ret)
{
	struct td_chain_decoder *dec = calloc(1, sizeof(*dec));
	if (!dec || !(dec->cache = calloc(TD_CHAIN_CACHE, sizeof(*dec->cache)))) {
		free(dec);
		return &td_enomem;
	}
	dec->prog = prog;
	*ret = dec;
	return NULL;
}

void td_chain_decoder_destroy(struct td_chain_decoder *dec)
{
	if (!dec)
		return;
	free(dec->cache);
	for (int i = 0; i < dec->nper_task; i++)
		free(dec->per_task[i]);
	free(dec->mark_prefix);
	free(dec->tag_prefix);
	for (int i = 0; i < dec->ntag_path; i++)
		free(dec->tag_path[i]);
	for (struct scratch_block *b = dec->scratch, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	free(dec);
}

struct td_error *td_chain_decoder_per_task(struct td_chain_decoder *dec, const char *name)
{
	for (int i = 0; i < dec->nper_task; i++)
		if (strcmp(dec->per_task[i], name) == 0)
			return NULL;
	if (dec->nper_task == TD_CHAIN_PER_TASK)
		return td_error_format(TD_ERR_USAGE, "too many per-task awaitees");
	if (!(dec->per_task[dec->nper_task] = strdup(name)))
		return &td_enomem;
	dec->nper_task++;
	return NULL;
}

struct td_error *td_chain_decoder_mark(struct td_chain_decoder *dec, const char *prefix)
{
	if (dec->mark_prefix)
		return td_error_format(TD_ERR_USAGE, "one prefix");
	if (!(dec->mark_prefix = strdup(prefix)))
		return &td_enomem;
	return NULL;
}

struct td_error *td_chain_decoder_tag(struct td_chain_decoder *dec, const char *prefix, const char *const *path,
				      int npath)
{
	if (dec->tag_prefix || npath < 1 || npath > TD_CHAIN_TAG_PATH)
		return td_error_format(TD_ERR_USAGE, "one prefix, and a path of 1 to %d fields", TD_CHAIN_TAG_PATH);
	char *copy[TD_CHAIN_TAG_PATH];
	char *p = strdup(prefix);
	int n = 0;
	while (p && n < npath && (copy[n] = strdup(path[n])))
		n++;
	if (!p || n < npath) {
		free(p);
		while (n > 0)
			free(copy[--n]);
		return &td_enomem;
	}
	memcpy(dec->tag_path, copy, sizeof(copy[0]) * (size_t)n);
	dec->ntag_path = n;
	dec->tag_prefix = p;
	return NULL;
}

static bool is_held_kind(Dwarf_Die *t)
{
	const char *name = dwarf_diename(t);
	for (int i = 0; name && held_kinds[i]; i++) {
		size_t n = strlen(held_kinds[i]);
		if (held_kinds[i][n - 1] == '<' ? strncmp(name, held_kinds[i], n) == 0
						: strcmp(name, held_kinds[i]) == 0)
			return true;
	}
	return false;
}

/*
 * Whether a field of a suspended state is one of the generator's upvars: rustc
 * repeats the arguments (as in Unresumed, same name and offset) in every
 * state, stale once they have been moved. Only the state's own locals count.
 */
static bool is_upvar(Dwarf_Die *state_machine, const char *name, Dwarf_Word off)
{
	Dwarf_Die part, variant, member;
	if (!name || dwarf_child(state_machine, &part) != 0)
		return false;
	do {
		if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
			continue;
		do {
			Dwarf_Attribute attr;
			Dwarf_Word discr;
			Dwarf_Die unresumed;
			if (dwarf_tag(&variant) != DW_TAG_variant ||
			    dwarf_formudata(dwarf_attr(&variant, DW_AT_discr_value, &attr), &discr) != 0 ||
			    discr != 0 || dwarf_child(&variant, &member) != 0 || !td_die_type(&member, &unresumed))
				continue;
			Dwarf_Die field;
			if (dwarf_child(&unresumed, &field) != 0)
				return false;
			do {
				Dwarf_Word foff;
				const char *fname = dwarf_diename(&field);
				if (fname && strcmp(fname, name) == 0 &&
				    dwarf_formudata(dwarf_attr(&field, DW_AT_data_member_location, &attr), &foff) == 0)
					return foff == off;
			} while (dwarf_siblingof(&field, &field) == 0);
			return false;
		} while (dwarf_siblingof(&variant, &variant) == 0);
	} while (dwarf_siblingof(&part, &part) == 0);
	return false;
}

/* A struct with one member: that member's type and offset. */
static bool newtype_of(Dwarf_Die *t, Dwarf_Die *inner, Dwarf_Word *off)
{
	Dwarf_Die child, only;
	int n = 0;
	Dwarf_Attribute attr;
	if (dwarf_tag(t) != DW_TAG_structure_type || dwarf_child(t, &child) != 0)
		return false;
	do {
		if (dwarf_tag(&child) == DW_TAG_member) {
			only = child;
			n++;
		} else if (dwarf_tag(&child) == DW_TAG_variant_part) {
			return false;
		}
	} while (n < 2 && dwarf_siblingof(&child, &child) == 0);
	return n == 1 && td_die_type(&only, inner) &&
	       dwarf_formudata(dwarf_attr(&only, DW_AT_data_member_location, &attr), off) == 0;
}

/* The fields of a suspended state that hold handles, guards or channel ends. */
static void find_holds(struct td_chain_state *st, Dwarf_Die *state_machine, Dwarf_Die *payload_type,
		       uint64_t payload_off, bool unresumed)
{
	Dwarf_Die child;
	if (dwarf_child(payload_type, &child) != 0)
		return;
	do {
		Dwarf_Die t;
		Dwarf_Attribute attr;
		Dwarf_Word off;
		const char *n = dwarf_diename(&child);
		if (dwarf_tag(&child) != DW_TAG_member || (n && strcmp(n, "__awaitee") == 0) ||
		    !td_die_type(&child, &t) ||
		    !dwarf_attr(&child, DW_AT_data_member_location, &attr) || dwarf_formudata(&attr, &off) != 0)
			continue;
		/* A newtype around a guard (struct SendGuard(MutexGuard<..>)) holds it too. */
		Dwarf_Die inner_t;
		Dwarf_Word inner_off = 0;
		if (!is_held_kind(&t) && newtype_of(&t, &inner_t, &inner_off) && is_held_kind(&inner_t))
			t = inner_t;
		else if (!is_held_kind(&t))
			continue;
		else
			inner_off = 0;
		if (!unresumed && is_upvar(state_machine, n, off))
			continue;
		if (st->nholds == TD_CHAIN_MAX_HOLDS)
			return;
		st->holds[st->nholds++] = (struct td_chain_hold){
			.type = dwarf_dieoffset(&t), .offset = payload_off + off + inner_off, .name = n,
		};
	} while (dwarf_siblingof(&child, &child) == 0);
}

/* What the state v is in means: the state's variant, its member (for the line) and its payload. */
static void decode_state(struct td_chain_decoder *dec, struct td_chain_state *st, struct td_value *v,
			 struct td_value *payload, Dwarf_Die *member)
{
	st->file = dwarf_decl_file(member);
	if (dwarf_decl_line(member, &st->line) != 0)
		st->line = 0;
	/* An .await inside select!/join!: td_chain_macro_site finds the line that calls it, after the stop. */
	st->in_macro = td_future_foreign_site(&v->type, st->file);
	/* In a macro: whose code it is is the async fn's (the line becomes the macro's call). */
	st->own = td_program_own_source(v->prog, member, st->in_macro ? td_future_body_file(&v->type) : st->file);
	uint64_t off;
	if (td_type_member(&payload->type, "__awaitee", &st->awaitee_type, &off)) {
		st->has_awaitee = true;
		st->awaitee_offset = payload->address - v->address + off;
	}
	find_holds(st, &v->type, &payload->type, payload->address - v->address, st->discr == 0);
	const char *aw = st->has_awaitee ? dwarf_diename(&st->awaitee_type) : NULL;
	for (int p = 0; aw && p < dec->nper_task; p++)
		st->per_task |= strncmp(aw, dec->per_task[p], strlen(dec->per_task[p])) == 0;
	st->marked = aw && dec->mark_prefix && strncmp(aw, dec->mark_prefix, strlen(dec->mark_prefix)) == 0;
}

/*
 * The tag of future v (see td_chain_decoder_tag), 0 if none; *found (if not
 * yet set): where the tagged future's member at the path's first field is (an
 * Instrumented's Span, whose type is the same in every Instrumented<F>).
 */
static uint64_t future_tag(struct td_chain_decoder *dec, struct td_value v, uint64_t *found)
{
	if (!dec->tag_prefix)
		return 0;
	/* Most futures can hold none: known per type without a search (a cache of the answer). */
	uint64_t key = dwarf_dieoffset(&v.type);
	uint64_t *slot = &dec->untagged[key % (sizeof(dec->untagged) / sizeof(dec->untagged[0]))];
	if (*slot == key)
		return 0;
	if (td_future_find(&v, dec->tag_prefix, false, NULL, 0) < 0) {
		if (td_future_never_holds(&v, dec->tag_prefix, false))
			*slot = key;
		return 0;
	}
	/* Where the path's first field and its word are: once per tagged type (member lookups walk DWARF). */
	uint64_t tkey = dwarf_dieoffset(&v.type);
	size_t nslots = sizeof(dec->tag_offsets) / sizeof(dec->tag_offsets[0]);
	__typeof__(dec->tag_offsets[0]) *to = &dec->tag_offsets[tkey % nslots];
	if (to->type != tkey) {
		struct td_value u = v;
		uint64_t first = 0;
		for (int i = 0; i < dec->ntag_path; i++) {
			Dwarf_Die t;
			uint64_t off;
			if (!td_type_member(&u.type, dec->tag_path[i], &t, &off))
				return 0;
			td_value_init(&u, u.prog, &t, u.address + off);
			if (i == 0)
				first = u.address - v.address;
		}
		to->type = tkey;
		to->first = first;
		to->word = u.address - v.address;
	}
	if (found && !*found)
		*found = v.address + to->first;
	uint64_t word = 0;
	if (td_program_read_uint(v.prog, v.address + to->word, 8, &word))
		return 0;
	return word;
}

static struct td_error *build(struct td_chain_decoder *dec, struct td_value v, int tree, struct td_chain **ret);

/* The futures of a fork: each one's chain, or the leaf it is. */
static struct td_error *build_children(struct td_chain_decoder *dec, struct td_chain *c, struct td_value *kids,
				       int nkids, int tree)
{
	struct td_chain_child *out = scratch_alloc(dec, sizeof(*out) * (size_t)nkids);
	if (!out)
		return &td_enomem;
	for (int k = 0; k < nkids; k++) {
		struct td_value f = kids[k];
		out[k] = (struct td_chain_child){ .elem = dwarf_dieoffset(&f.type) };
		td_future_unbox(&f);
		td_future_inner_async(&f);
		if (td_future_is_async_body(&f.type)) {
			struct td_chain *child;
			struct td_error *err = build(dec, f, tree + 1, &child);
			if (err)
				return err;
			out[k].chain = child;
			out[k].leaf = child->leaf;
		} else {
			out[k].variant = td_future_live_payload(&f);
			out[k].leaf = f.address;
			out[k].leaf_type = dwarf_dieoffset(&f.type);
		}
	}
	c->children = out;
	c->nchildren = nkids;
	return NULL;
}

/*
 * The chain of .awaits from v down. Decoding is memoized per (type, state);
 * the key is made of the levels' state slots, their tags, the root's tag and
 * the root leaf's type, so equal keys mean equal shared chains.
 */
static struct td_error *build(struct td_chain_decoder *dec, struct td_value v, int tree, struct td_chain **ret)
{
	struct td_chain *c = scratch_alloc(dec, sizeof(*c));
	if (!c)
		return &td_enomem;
	c->depth = 0;
	c->shared = false;
	c->leaf = c->leaf_type = c->tagged = c->marked = 0;
	c->nchildren = 0;
	c->children = NULL;
	c->error = NULL;
	uint16_t key[TD_CHAIN_DEPTH];
	struct td_value kids[TD_CHAIN_CHILDREN];
	int nforked = 0;
	bool per_task = false;
	struct td_error *err = NULL;
	td_future_unbox(&v);
	uint64_t tagged = 0;
	c->root_tag = future_tag(dec, v, &tagged);
	/* A task whose future is a wrapper (a framework's connection, a combinator): the async body in it. */
	td_future_inner_async(&v);
	/*
	 * A future that holds no async body at all (an idle hyper connection:
	 * no request in flight) is its own leaf: the chain is empty, and says
	 * the leaf's type for the caller to tell what it waits on.
	 */
	if (!td_future_is_async_body(&v.type)) {
		c->leaf_type = dwarf_dieoffset(&v.type);
		c->leaf = v.address;
	}
	while (c->depth < TD_CHAIN_DEPTH && td_future_is_async_body(&v.type)) {
		struct td_value payload;
		const char *vname;
		uint64_t discr;
		Dwarf_Die member;
		struct td_chain_state *st;
		Dwarf_Off toff = dwarf_dieoffset(&v.type);
		if ((err = td_value_variant(&v, &payload, &vname, &discr, &member)))
			break;
		size_t slot = 0;
		while (slot < dec->ncache && (dec->cache[slot].type != toff || dec->cache[slot].discr != discr))
			slot++;
		if (slot < dec->ncache) {
			st = &dec->cache[slot];
		} else {
			/* A full cache: decoded for this chain alone, which is then never shared. */
			bool full = dec->ncache >= TD_CHAIN_CACHE;
			st = full ? scratch_alloc(dec, sizeof(*st)) : &dec->cache[dec->ncache++];
			if (!st)
				return &td_enomem;
			per_task |= full;
			*st = (struct td_chain_state){ .type = toff, .discr = discr, .name = vname };
			decode_state(dec, st, &v, &payload, &member);
		}
		per_task |= st->nholds > 0 || st->per_task;
		key[c->depth] = (uint16_t)slot;
		c->levels[c->depth++] = (struct td_chain_level){ .state = st, .addr = v.address };
		if (!st->has_awaitee)
			break;
		struct td_value next;
		td_value_init(&next, v.prog, &st->awaitee_type, v.address + st->awaitee_offset);
		v = next;
		/* A boxed awaitee: the future in the box (its own level, if an async body). */
		td_future_unbox(&v);
		if (!td_future_is_async_body(&v.type))
			c->leaf = v.address;
		c->levels[c->depth - 1].tag = future_tag(dec, v, &tagged);
		/*
		 * A wrapper (tokio's Timeout, tracing's Instrumented, a combinator)
		 * awaited: the chain goes on in the async body it polls, whose own
		 * innermost await becomes the leaf; the wrapper stays the leaf if
		 * it holds none. One that polls several futures it holds
		 * (futures-util's select(), join()) ends the chain: they are its
		 * level's children.
		 */
		if (tree < TD_CHAIN_TREE_DEPTH && td_future_may_fork(&v) &&
		    (nforked = td_future_fork(&v, kids, TD_CHAIN_CHILDREN)) >= 2)
			break;
		nforked = 0;
		td_future_inner_async(&v);
	}
	int depth = c->depth;
	c->tagged = tagged;
	/* The outermost marked awaitee (a Timeout): where it is, for the task (the chain may be shared). */
	for (int i = 0; i < depth && dec->mark_prefix; i++) {
		const struct td_chain_state *st = c->levels[i].state;
		if (st->marked && st->has_awaitee) {
			c->marked = c->levels[i].addr + st->awaitee_offset;
			break;
		}
	}
	/*
	 * The innermost awaited future polls several futures at once (select!,
	 * join! through a tuple it points at; futures-util's select()/join()
	 * holding them, found above): each gets a chain of its own.
	 */
	int nkids = nforked;
	Dwarf_Die state_type;
	if (!nkids && depth > 0 && !err && c->levels[depth - 1].state->has_awaitee &&
	    !td_future_is_async_body(&v.type) && tree < TD_CHAIN_TREE_DEPTH && td_future_may_have_children(&v) &&
	    td_program_die_at(v.prog, c->levels[depth - 1].state->type, &state_type)) {
		Dwarf_Word size = (Dwarf_Word)dwarf_bytesize(&state_type);
		uint64_t lo = c->levels[depth - 1].addr;
		nkids = td_future_children(&v, lo, lo + size, kids, TD_CHAIN_CHILDREN);
	}
	per_task |= nkids > 0;
	/* The key: the levels' (type, state) slots, the tags, the root's tag and leaf type. */
	char *k = scratch_alloc(dec, TD_CHAIN_DEPTH * (sizeof(key[0]) + sizeof(uint64_t) + 1) + 2 * sizeof(uint64_t));
	if (!k) {
		td_error_destroy(err);
		return &td_enomem;
	}
	size_t klen = (size_t)depth * sizeof(key[0]);
	memcpy(k, key, klen);
	for (int i = 0; i < depth; i++) {
		uint64_t tag = c->levels[i].tag;
		if (tag) {
			memcpy(k + klen, &tag, sizeof(tag));
			klen += sizeof(tag);
			k[klen++] = (char)i;
		}
	}
	uint64_t extra[2] = { c->root_tag, c->leaf_type };
	if (c->root_tag || (depth == 0 && c->leaf_type)) {
		memcpy(k + klen, extra, sizeof(extra));
		klen += sizeof(extra);
	}
	c->key = k;
	c->key_len = klen;
	c->shared = !per_task && !err;
	if (err) {
		c->error = scratch_strdup(dec, err->message);
		td_error_destroy(err);
	}
	*ret = c;
	return nkids > 0 ? build_children(dec, c, kids, nkids, tree) : NULL;
}

struct td_error *td_chain_build(struct td_chain_decoder *dec, struct td_value v, const struct td_chain **ret)
{
	struct td_chain *c;
	scratch_reset(dec);
	struct td_error *err = build(dec, v, 0, &c);
	if (!err)
		*ret = c;
	return err;
}

struct td_error *td_chain_build_stage(struct td_chain_decoder *dec, Dwarf_Die *stage_type, uint64_t addr,
				      const struct td_chain **ret, const char **reason)
{
	struct td_value stage, payload, future;
	scratch_reset(dec);
	td_value_init(&stage, dec->prog, stage_type, addr);
	const char *name;
	uint64_t discr;
	*ret = NULL;
	struct td_error *err = td_value_variant(&stage, &payload, &name, &discr, NULL);
	if (!err && strcmp(name, "Running") != 0) {
		*reason = name;
		return NULL;
	}
	if (!err) {
		/* Where Running's future sits, memoized per payload type (a DWARF walk). */
		struct running_memo { Dwarf_Die type; uint64_t offset; } *rm;
		uint64_t toff = dwarf_dieoffset(&payload.type);
		rm = td_program_memo_get(dec->prog, TD_MEMO_RUNNING, toff, 0);
		if (!rm && !(err = td_value_member(&payload, "__0", &future)) && (rm = malloc(sizeof(*rm)))) {
			rm->type = future.type;
			rm->offset = future.address - payload.address;
			td_program_memo_put(dec->prog, TD_MEMO_RUNNING, toff, 0, rm);
		}
		if (rm && !err)
			td_value_init(&future, dec->prog, &rm->type, payload.address + rm->offset);
	}
	if (err) {
		*reason = scratch_strdup(dec, err->message);
		td_error_destroy(err);
		return NULL;
	}
	struct td_chain *c;
	if ((err = build(dec, future, 0, &c)))
		return err;
	*ret = c;
	return NULL;
}

void td_chain_column_init(struct td_chain_column *col, struct td_chain_decoder *dec, uint64_t skip_mask,
			  long tagged_max, long marked_max)
{
	col->dec = dec;
	col->skip_mask = skip_mask;
	col->tagged_left = tagged_max;
	col->marked_left = marked_max;
	col->nstages = 0;
}

void td_chain_column_stage(struct td_chain_column *col, uint64_t vtable, Dwarf_Die *type, uint64_t offset)
{
	int c = 0;
	while (c < col->nstages && col->stages[c].vtable != vtable)
		c++;
	if (c == col->nstages) {
		if (col->nstages == TD_CHAIN_STAGES)
			c = col->nstages - 1;  /* more future types than slots: reuse the last */
		else
			col->nstages++;
	}
	col->stages[c].vtable = vtable;
	col->stages[c].has = type != NULL;
	if (type) {
		col->stages[c].type = *type;
		col->stages[c].offset = offset;
	}
}

struct td_error *td_chain_column_task(struct td_chain_column *col, uint64_t node, uint64_t vtable, uint64_t state,
				      enum td_chain_task_result *result, const struct td_chain **ret,
				      const char **reason, uint64_t *tagged, uint64_t *marked)
{
	*tagged = *marked = 0;
	*result = TD_CHAIN_TASK_SKIPPED;
	if (state & col->skip_mask)
		return NULL;
	int c = 0;
	while (c < col->nstages && col->stages[c].vtable != vtable)
		c++;
	if (c == col->nstages) {
		*result = TD_CHAIN_TASK_NEED_STAGE;
		return NULL;
	}
	if (!col->stages[c].has)
		return NULL;
	struct td_error *err = td_chain_build_stage(col->dec, &col->stages[c].type, node + col->stages[c].offset,
						    ret, reason);
	if (err)
		return err;
	*result = *ret ? TD_CHAIN_TASK_CHAIN : TD_CHAIN_TASK_REASON;
	if (*ret && (*ret)->tagged && col->tagged_left > 0) {
		col->tagged_left--;
		*tagged = (*ret)->tagged;
	}
	if (*ret && (*ret)->marked && col->marked_left > 0) {
		col->marked_left--;
		*marked = (*ret)->marked;
	}
	return NULL;
}

bool td_chain_macro_site(struct td_program *prog, uint64_t type, const char *state, const char **ret_file,
			 int *ret_line)
{
	Dwarf_Die sm, part, variant, member, vtype;
	if (!td_program_die_at(prog, type, &sm) || dwarf_child(&sm, &part) != 0)
		return false;
	do {
		if (dwarf_tag(&part) != DW_TAG_variant_part || dwarf_child(&part, &variant) != 0)
			continue;
		do {
			const char *vn;
			if (dwarf_tag(&variant) != DW_TAG_variant || dwarf_child(&variant, &member) != 0 ||
			    !td_die_type(&member, &vtype) || !(vn = dwarf_diename(&vtype)) || strcmp(vn, state) != 0)
				continue;
			return td_future_macro_site(prog, &sm, &vtype, dwarf_decl_file(&member), ret_file, ret_line);
		} while (dwarf_siblingof(&variant, &variant) == 0);
	} while (dwarf_siblingof(&part, &part) == 0);
	return false;
}
