#include "snapshot/unwind.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <stdlib.h>
#include <string.h>

/* libdwfl keeps dwfl_arg for the Dwfl's life: it is the snapshot, which owns the Dwfl. */
static pid_t next_thread(Dwfl *dwfl, void *dwfl_arg, void **thread_argp)
{
	struct td_snapshot *snap = dwfl_arg;
	while (snap->unwind_next < snap->nthreads) {
		struct td_snapshot_thread *t = &snap->threads[snap->unwind_next++];
		if (!t->stopped)
			continue;
		*thread_argp = t;
		return t->tid;
	}
	return 0;
}

static bool get_thread(Dwfl *dwfl, pid_t tid, void *dwfl_arg, void **thread_argp)
{
	struct td_snapshot *snap = dwfl_arg;
	for (size_t i = 0; i < snap->nthreads; i++) {
		if (snap->threads[i].tid == tid && snap->threads[i].stopped) {
			*thread_argp = &snap->threads[i];
			return true;
		}
	}
	return false;
}

/*
 * A word of t's stack copy. A profiler's copy is the top of the stack only,
 * and the stack beyond it has changed since: reading it from the process
 * would make up frames.
 */
static bool read_copied(const struct td_snapshot_thread *t, Dwarf_Addr addr, Dwarf_Word *result)
{
	if (!t->stack || addr < t->stack_addr || addr - t->stack_addr > t->stack_len ||
	    t->stack_len - (addr - t->stack_addr) < sizeof(uint64_t))
		return false;
	uint64_t word;
	memcpy(&word, t->stack + (addr - t->stack_addr), sizeof(word));
	*result = word;
	return true;
}

static bool memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *dwfl_arg)
{
	struct td_snapshot *snap = dwfl_arg;
	uint64_t word;
	const struct td_snapshot_thread *only = snap->unwind_sample;
	if (only)
		return read_copied(only, addr, result);
	if (snap->unwind_copies_only) {
		for (size_t i = 0; i < snap->nthreads; i++)
			if (read_copied(&snap->threads[i], addr, result))
				return true;
		return false;
	}
	if (td_snapshot_read(snap, addr, &word, sizeof(word)) != sizeof(word))
		return false;
	*result = word;
	return true;
}

static bool set_initial_registers(Dwfl_Thread *thread, void *thread_arg)
{
	const struct td_snapshot_thread *t = thread_arg;
	const struct user_regs_struct *r = &t->regs;
	/* DWARF register numbers 0-16 of x86_64; 16 is the return address (rip). */
	Dwarf_Word regs[17] = {
		r->rax, r->rdx, r->rcx, r->rbx, r->rsi, r->rdi, r->rbp, r->rsp,
		r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, r->rip,
	};
	if (!dwfl_thread_state_registers(thread, 0, 17, regs))
		return false;
	dwfl_thread_state_register_pc(thread, r->rip);
	return true;
}

static const Dwfl_Thread_Callbacks callbacks = {
	.next_thread = next_thread,
	.get_thread = get_thread,
	.memory_read = memory_read,
	.set_initial_registers = set_initial_registers,
};

struct frame_collector {
	struct td_stack *stack;
	size_t capacity;
};

static int collect_frame(Dwfl_Frame *frame, void *arg)
{
	struct frame_collector *c = arg;
	struct td_stack *s = c->stack;
	Dwarf_Addr pc;
	bool activation;
	if (!dwfl_frame_pc(frame, &pc, &activation))
		return DWARF_CB_ABORT;
	if (s->count == TD_MAX_FRAMES) {
		s->truncated = true;
		return DWARF_CB_ABORT;
	}
	if (s->count == c->capacity) {
		size_t cap = c->capacity ? c->capacity * 2 : 32;
		uint64_t *pcs = realloc(s->pcs, cap * sizeof(*pcs));
		if (pcs)
			s->pcs = pcs;
		bool *act = realloc(s->activation, cap * sizeof(*act));
		if (act)
			s->activation = act;
		struct td_frame_regs *regs = realloc(s->regs, cap * sizeof(*regs));
		if (regs)
			s->regs = regs;
		if (!pcs || !act || !regs)
			return DWARF_CB_ABORT;
		c->capacity = cap;
	}
	s->pcs[s->count] = pc;
	s->activation[s->count] = activation;
	struct td_frame_regs *r = &s->regs[s->count];
	r->known = 0;
	for (unsigned n = 0; n < TD_FRAME_REGS; n++) {
		Dwarf_Word v;
		if (dwfl_frame_reg(frame, n, &v) == 0) {
			r->r[n] = v;
			r->known |= 1u << n;
		}
	}
	s->count++;
	/* A zero return address is how the outermost frame ends (clone, _start). */
	return pc == 0 ? DWARF_CB_ABORT : DWARF_CB_OK;
}

/* Once per Dwfl: a snapshot taken again keeps its callbacks and argument. */
static struct td_error *attach(struct td_snapshot *snap)
{
	if (!snap->unwind_attached && !dwfl_attach_state(snap->dwfl, NULL, snap->pid, &callbacks, snap))
		return td_error_format(TD_ERR_INTERNAL, "cannot set up unwinding: %s", dwfl_errmsg(-1));
	snap->unwind_attached = true;
	return NULL;
}

static void unwind_one(struct td_snapshot *snap, size_t i, struct td_stack *stack)
{
	struct frame_collector c = { .stack = stack };
	if (!snap->threads[i].stopped) {
		stack->error = strdup("it did not stop within 250 ms (uninterruptible sleep: "
				      "vfork, FUSE, NFS?), so it was left running and not unwound");
		return;
	}
	int r = dwfl_getthread_frames(snap->dwfl, snap->threads[i].tid, collect_frame, &c);
	if (r != 0 && r != DWARF_CB_ABORT && stack->count < 2) {
		const char *msg = dwfl_errmsg(-1);
		stack->error = strdup(msg ? msg : "unwinding failed");
	}
	/* Drop a trailing zero pc: it marks the end, it is not a frame. */
	if (stack->count && stack->pcs[stack->count - 1] == 0)
		stack->count--;
}

struct td_error *td_unwind_sample(struct td_snapshot *snap, pid_t tid, const struct user_regs_struct *regs,
				   uint64_t stack_addr, const unsigned char *stack, size_t len,
				   struct td_stack *out)
{
	struct td_error *err = attach(snap);
	if (err)
		return err;
	struct td_snapshot_thread one = {
		.tid = tid, .stopped = true, .regs = *regs, .syscall = -1,
		.stack_addr = stack_addr, .stack = (unsigned char *)stack, .stack_len = len,
	};
	struct td_snapshot_thread *threads = snap->threads;
	size_t nthreads = snap->nthreads;
	snap->threads = &one;
	snap->nthreads = 1;
	snap->unwind_sample = &one;
	*out = (struct td_stack){ 0 };
	unwind_one(snap, 0, out);
	snap->unwind_sample = NULL;
	snap->threads = threads;
	snap->nthreads = nthreads;
	return NULL;
}

struct td_error *td_unwind_all(struct td_snapshot *snap, const struct td_stack **ret)
{
	if (!snap->stacks) {
		struct td_stack *stacks = calloc(snap->nthreads ? snap->nthreads : 1, sizeof(*stacks));
		if (!stacks)
			return &td_enomem;
		struct td_error *err = attach(snap);
		if (err) {
			free(stacks);
			return err;
		}
		for (size_t i = 0; i < snap->nthreads; i++)
			unwind_one(snap, i, &stacks[i]);
		snap->stacks = stacks;
	}
	*ret = snap->stacks;
	return NULL;
}

void td_stack_clear(struct td_stack *stack)
{
	free(stack->pcs);
	free(stack->activation);
	free(stack->regs);
	free(stack->error);
	*stack = (struct td_stack){ 0 };
}

void td_stacks_destroy(struct td_stack *stacks, size_t count)
{
	if (!stacks)
		return;
	for (size_t i = 0; i < count; i++)
		td_stack_clear(&stacks[i]);
	free(stacks);
}
