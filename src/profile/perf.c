#include "profile/perf.h"

#include <asm/perf_regs.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "target/procfs.h"

/* All ring buffers together, at most (1 GiB would be 500 threads at 2 MiB). */
#define TD_PERF_BUFFERS_MAX (256u << 20)

/* The registers asked for, in the kernel's order (bit n = PERF_REG_X86_*). */
static const int wanted_regs[] = {
	PERF_REG_X86_AX, PERF_REG_X86_BX, PERF_REG_X86_CX, PERF_REG_X86_DX,
	PERF_REG_X86_SI, PERF_REG_X86_DI, PERF_REG_X86_BP, PERF_REG_X86_SP,
	PERF_REG_X86_IP, PERF_REG_X86_R8, PERF_REG_X86_R9, PERF_REG_X86_R10,
	PERF_REG_X86_R11, PERF_REG_X86_R12, PERF_REG_X86_R13, PERF_REG_X86_R14,
	PERF_REG_X86_R15,
};
#define NREGS (sizeof(wanted_regs) / sizeof(wanted_regs[0]))

struct perf_thread {
	pid_t tid;
	int fd;
	struct perf_event_mmap_page *page;
	size_t data_size;   /* a power of two */
	size_t map_size;
	bool gone;          /* the thread exited: closed once drained */
};

struct td_perf {
	pid_t pid;
	unsigned rate;
	size_t stack_bytes;
	struct perf_thread *threads;
	size_t count, cap;
	uint64_t lost;
	size_t unsampled;        /* threads born later that could not be given an event */
	unsigned char *record;   /* a record that wraps around a buffer's end, reassembled */
	size_t record_cap;
};

static uint64_t regs_mask(void)
{
	uint64_t mask = 0;
	for (size_t i = 0; i < NREGS; i++)
		mask |= 1ull << wanted_regs[i];
	return mask;
}

static int open_event(const struct td_perf *perf, pid_t tid)
{
	struct perf_event_attr attr = {
		.size = sizeof(attr),
		.type = PERF_TYPE_SOFTWARE,
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.freq = 1,
		.sample_freq = perf->rate,
		.sample_type = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER |
			       PERF_SAMPLE_STACK_USER,
		.sample_regs_user = regs_mask(),
		.sample_stack_user = (uint32_t)perf->stack_bytes,
		.disabled = 1,
		.exclude_kernel = 1,
		.exclude_hv = 1,
		.use_clockid = 1,
		.clockid = CLOCK_MONOTONIC,
	};
	return (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static struct td_error *refused(int err, bool mapping)
{
	if (mapping)
		return td_error_format(TD_ERR_TARGET, "cannot map a perf event's buffer (%s): raise the locked-memory "
				       "limit (ulimit -l, or sysctl kernel.perf_event_mlock_kb)", strerror(err));
	if (err == EMFILE || err == ENFILE)
		return td_error_format(TD_ERR_TARGET, "too many threads for perf events: one file each (%s); "
				       "raise the limit (ulimit -n)", strerror(err));
	int paranoid = -1;
	FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
	if (f) {
		if (fscanf(f, "%d", &paranoid) != 1)
			paranoid = -1;
		fclose(f);
	}
	if (err == EACCES || err == EPERM)
		return td_error_format(TD_ERR_TARGET,
				       "perf events are not permitted (%s; kernel.perf_event_paranoid is %d). "
				       "Run as root, give taskdbg CAP_PERFMON, or lower it: "
				       "sysctl kernel.perf_event_paranoid=2",
				       strerror(err), paranoid);
	return td_error_format(TD_ERR_TARGET, "perf events are not available: %s", strerror(err));
}

/*
 * Maps the event's ring buffer: 2 MiB (about 60 samples of 32 KiB) where 512
 * threads or fewer share TD_PERF_BUFFERS_MAX, less for more threads, never
 * under 128 KiB (a sample must fit). Smaller where the locked-memory limit
 * (perf_event_mlock_kb, ulimit -l) says so.
 */
static bool map_buffer(struct perf_thread *t, size_t nthreads)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = 512;
	while (pages > 32 && pages * (size_t)page * (nthreads ? nthreads : 1) > TD_PERF_BUFFERS_MAX)
		pages /= 2;
	for (; pages >= 32; pages /= 2) {
		size_t size = (pages + 1) * (size_t)page;
		void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
		if (m != MAP_FAILED) {
			t->page = m;
			t->map_size = size;
			t->data_size = pages * (size_t)page;
			return true;
		}
	}
	return false;
}

/* Starts sampling tid; false with errno set (and *mapping set if mmap failed) when it cannot. */
static bool add_thread(struct td_perf *perf, pid_t tid, size_t nthreads, bool *mapping)
{
	if (perf->count == perf->cap) {
		size_t cap = perf->cap ? perf->cap * 2 : 32;
		struct perf_thread *grown = realloc(perf->threads, cap * sizeof(*grown));
		if (!grown) {
			errno = ENOMEM;
			return false;
		}
		perf->threads = grown;
		perf->cap = cap;
	}
	struct perf_thread t = { .tid = tid };
	t.fd = open_event(perf, tid);
	if (t.fd < 0)
		return false;
	if (!map_buffer(&t, nthreads)) {
		int e = errno;
		close(t.fd);
		errno = e;
		if (mapping)
			*mapping = true;
		return false;
	}
	ioctl(t.fd, PERF_EVENT_IOC_ENABLE, 0);
	perf->threads[perf->count++] = t;
	return true;
}

static bool known(const struct td_perf *perf, pid_t tid)
{
	for (size_t i = 0; i < perf->count; i++)
		if (perf->threads[i].tid == tid)
			return true;
	return false;
}

struct td_error *td_perf_open(pid_t pid, unsigned rate_hz, size_t stack_bytes, struct td_perf **ret)
{
	/* Tests only: a kernel that refuses, to see the ptrace fallback on a machine that permits. */
	if (getenv("TASKDBG_TEST_NO_PERF"))
		return td_error_format(TD_ERR_TARGET, "perf events are not permitted (TASKDBG_TEST_NO_PERF is set)");
	struct td_perf *perf = calloc(1, sizeof(*perf));
	if (!perf)
		return &td_enomem;
	perf->pid = pid;
	perf->rate = rate_hz;
	perf->stack_bytes = (stack_bytes + 7) & ~(size_t)7;
	pid_t *tids = NULL;
	size_t n = 0;
	struct td_error *err = td_proc_list_threads(pid, &tids, &n);
	for (size_t i = 0; !err && i < n; i++) {
		bool mapping = false;
		if (add_thread(perf, tids[i], n, &mapping))
			continue;
		/* A thread that just exited is no reason to give up. */
		if (errno != ESRCH)
			err = refused(errno, mapping);
	}
	free(tids);
	if (!err && perf->count == 0)
		err = td_error_format(TD_ERR_TARGET, "process %d has no thread to sample", (int)pid);
	if (err) {
		td_perf_close(perf);
		return err;
	}
	*ret = perf;
	return NULL;
}

void td_perf_rescan(struct td_perf *perf)
{
	pid_t *tids = NULL;
	size_t n = 0;
	struct td_error *err = td_proc_list_threads(perf->pid, &tids, &n);
	if (err) {
		td_error_destroy(err);
		return;
	}
	for (size_t i = 0; i < perf->count; i++) {
		bool alive = false;
		for (size_t j = 0; j < n && !alive; j++)
			alive = tids[j] == perf->threads[i].tid;
		perf->threads[i].gone = !alive;
	}
	for (size_t i = 0; i < n; i++)
		if (!known(perf, tids[i]) && !add_thread(perf, tids[i], n, NULL) && errno != ESRCH)
			perf->unsampled++;
	free(tids);
}

/* The record at offset off of t's buffer, reassembled if it wraps around. */
static const unsigned char *record_at(struct td_perf *perf, struct perf_thread *t, uint64_t off, size_t size)
{
	const unsigned char *data = (const unsigned char *)t->page + t->page->data_offset;
	size_t at = (size_t)(off & (t->data_size - 1));
	if (at + size <= t->data_size)
		return data + at;
	if (size > perf->record_cap) {
		unsigned char *grown = realloc(perf->record, size);
		if (!grown)
			return NULL;
		perf->record = grown;
		perf->record_cap = size;
	}
	size_t first = t->data_size - at;
	memcpy(perf->record, data + at, first);
	memcpy(perf->record + first, data, size - first);
	return perf->record;
}

/* Decodes a PERF_RECORD_SAMPLE of the layout open_event asked for. */
static bool parse_sample(const unsigned char *p, size_t size, struct td_perf_sample *s)
{
	const unsigned char *end = p + size;
	p += sizeof(struct perf_event_header);
	uint32_t pt[2];
	uint64_t abi, regs[NREGS], len;
	if (p + 8 + 8 + 8 > end)
		return false;
	memcpy(pt, p, 8);
	memcpy(&s->time_ns, p + 8, 8);
	memcpy(&abi, p + 16, 8);
	p += 24;
	if (abi == PERF_SAMPLE_REGS_ABI_NONE)
		return false;  /* a kernel thread, or a sample with no user state */
	if (p + sizeof(regs) + 8 > end)
		return false;
	memcpy(regs, p, sizeof(regs));
	p += sizeof(regs);
	memcpy(&len, p, 8);
	p += 8;
	if (len == 0 || p + len + 8 > end)
		return false;
	uint64_t dyn;
	memcpy(&dyn, p + len, 8);
	s->tid = (pid_t)pt[1];
	/* regs[] holds the wanted registers in bit order, which is wanted_regs' order. */
	struct user_regs_struct *r = &s->regs;
	memset(r, 0, sizeof(*r));
	unsigned long long *fields[] = {
		&r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp,
		&r->rip, &r->r8, &r->r9, &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15,
	};
	for (size_t i = 0; i < NREGS; i++)
		*fields[i] = regs[i];
	r->orig_rax = (uint64_t)-1;
	s->stack_addr = r->rsp;
	s->stack = p;
	s->stack_len = dyn < len ? (size_t)dyn : (size_t)len;
	return true;
}

static size_t drain_thread(struct td_perf *perf, struct perf_thread *t,
			   void (*fn)(const struct td_perf_sample *s, void *arg), void *arg)
{
	size_t count = 0;
	uint64_t head = __atomic_load_n(&t->page->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = t->page->data_tail;
	while (tail + sizeof(struct perf_event_header) <= head) {
		struct perf_event_header h;
		const unsigned char *hp = record_at(perf, t, tail, sizeof(h));
		if (!hp)
			break;
		memcpy(&h, hp, sizeof(h));
		if (h.size < sizeof(h) || tail + h.size > head)
			break;
		const unsigned char *rec = record_at(perf, t, tail, h.size);
		if (!rec)
			break;
		if (h.type == PERF_RECORD_SAMPLE) {
			struct td_perf_sample s;
			if (parse_sample(rec, h.size, &s)) {
				fn(&s, arg);
				count++;
			}
		} else if (h.type == PERF_RECORD_LOST && h.size >= sizeof(h) + 16) {
			uint64_t lost;
			memcpy(&lost, rec + sizeof(h) + 8, 8);
			perf->lost += lost;
		}
		tail += h.size;
	}
	__atomic_store_n(&t->page->data_tail, tail, __ATOMIC_RELEASE);
	return count;
}

static void close_thread(struct perf_thread *t)
{
	if (t->page)
		munmap(t->page, t->map_size);
	if (t->fd >= 0)
		close(t->fd);
}

size_t td_perf_drain(struct td_perf *perf, void (*fn)(const struct td_perf_sample *s, void *arg), void *arg)
{
	size_t count = 0;
	for (size_t i = 0; i < perf->count;) {
		struct perf_thread *t = &perf->threads[i];
		count += drain_thread(perf, t, fn, arg);
		if (t->gone) {
			close_thread(t);
			perf->threads[i] = perf->threads[--perf->count];
			continue;
		}
		i++;
	}
	return count;
}

uint64_t td_perf_lost(const struct td_perf *perf)
{
	return perf->lost;
}

size_t td_perf_unsampled(const struct td_perf *perf)
{
	return perf->unsampled;
}

void td_perf_close(struct td_perf *perf)
{
	if (!perf)
		return;
	for (size_t i = 0; i < perf->count; i++)
		close_thread(&perf->threads[i]);
	free(perf->threads);
	free(perf->record);
	free(perf);
}
