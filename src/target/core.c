#include "target/core.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "target/journal.h"
#include "util/timing.h"

/* Caps on what a (possibly malformed) core may make us allocate. */
#define TD_CORE_MAX_THREADS 65536
#define TD_CORE_MAX_FILES 1048576

static const char *elf_type_name(unsigned type)
{
	switch (type) {
	case ET_EXEC: return "an executable";
	case ET_DYN: return "a shared object or position-independent executable";
	case ET_REL: return "an object file";
	default: return "an ELF file of unknown type";
	}
}

static struct td_error *parse_nt_file(struct td_core *core, const unsigned char *desc, size_t size)
{
	/* count, page_size, then count * {start, end, file_ofs (in pages)}, then names */
	if (size < 16)
		return NULL;
	uint64_t count, page_size;
	memcpy(&count, desc, 8);
	memcpy(&page_size, desc + 8, 8);
	if (count > TD_CORE_MAX_FILES || 16 + count * 24 > size)
		return td_error_format(TD_ERR_TARGET,
			"core file %s is corrupt: its NT_FILE note claims %llu mappings in %zu bytes",
			core->path, (unsigned long long)count, size);
	core->files = calloc(count ? count : 1, sizeof(*core->files));
	if (!core->files)
		return &td_enomem;
	const char *names = (const char *)desc + 16 + count * 24;
	const char *end = (const char *)desc + size;
	for (uint64_t i = 0; i < count && names < end; i++) {
		const unsigned char *e = desc + 16 + i * 24;
		struct td_core_file *f = &core->files[core->nfiles];
		uint64_t pgoff;
		memcpy(&f->start, e, 8);
		memcpy(&f->end, e + 8, 8);
		memcpy(&pgoff, e + 16, 8);
		f->offset = pgoff * page_size;
		size_t len = strnlen(names, (size_t)(end - names));
		f->path = strndup(names, len);
		if (!f->path)
			return &td_enomem;
		f->fd = -1;
		names += len + 1;
		core->nfiles++;
	}
	return NULL;
}

static struct td_error *parse_notes(struct td_core *core, const GElf_Phdr *ph)
{
	Elf_Data *data = elf_getdata_rawchunk(core->elf, (int64_t)ph->p_offset, ph->p_filesz, ELF_T_NHDR);
	if (!data)
		return td_error_format(TD_ERR_TARGET, "core file %s is corrupt: unreadable notes (%s)",
				       core->path, elf_errmsg(-1));
	size_t offset = 0, name_off, desc_off;
	GElf_Nhdr nh;
	while (offset < data->d_size &&
	       (offset = gelf_getnote(data, offset, &nh, &name_off, &desc_off)) > 0) {
		const char *name = (const char *)data->d_buf + name_off;
		const unsigned char *desc = (const unsigned char *)data->d_buf + desc_off;
		if (nh.n_namesz != 5 || memcmp(name, "CORE", 5) != 0)
			continue;
		if (nh.n_type == NT_PRSTATUS && nh.n_descsz >= sizeof(struct elf_prstatus)) {
			if (core->nthreads == TD_CORE_MAX_THREADS)
				continue;
			struct elf_prstatus st;
			memcpy(&st, desc, sizeof(st));
			struct td_core_thread *grown = realloc(core->threads,
				(core->nthreads + 1) * sizeof(*grown));
			if (!grown)
				return &td_enomem;
			core->threads = grown;
			struct td_core_thread *t = &core->threads[core->nthreads++];
			t->tid = st.pr_pid;
			t->cursig = st.pr_cursig;
			_Static_assert(sizeof(st.pr_reg) == sizeof(t->regs), "elf_gregset_t layout");
			memcpy(&t->regs, &st.pr_reg, sizeof(t->regs));
		} else if (nh.n_type == NT_PRPSINFO && nh.n_descsz >= sizeof(struct elf_prpsinfo)) {
			struct elf_prpsinfo ps;
			memcpy(&ps, desc, sizeof(ps));
			core->pid = ps.pr_pid;
			memcpy(core->fname, ps.pr_fname, sizeof(ps.pr_fname));
			core->fname[sizeof(ps.pr_fname)] = '\0';
			memcpy(core->psargs, ps.pr_psargs, sizeof(ps.pr_psargs));
			core->psargs[sizeof(ps.pr_psargs)] = '\0';
		} else if (nh.n_type == NT_AUXV) {
			for (size_t i = 0; i + 16 <= nh.n_descsz; i += 16) {
				uint64_t type, val;
				memcpy(&type, desc + i, 8);
				memcpy(&val, desc + i + 8, 8);
				if (type == AT_ENTRY)
					core->entry = val;
			}
		} else if (nh.n_type == NT_FILE && !core->files) {
			struct td_error *err = parse_nt_file(core, desc, nh.n_descsz);
			if (err)
				return err;
		}
	}
	return NULL;
}

/* One user.coredump.* attribute as a string (NUL-terminated), or false. */
static bool coredump_xattr(int fd, const char *name, char *buf, size_t size)
{
	ssize_t n = fgetxattr(fd, name, buf, size - 1);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return true;
}

static long long coredump_number(int fd, const char *name, bool *present)
{
	char buf[64], *end;
	if (!coredump_xattr(fd, name, buf, sizeof(buf)) || !buf[0])
		return -1;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end || v < 0)
		return -1;
	*present = true;
	return v;
}

static char *coredump_string(int fd, const char *name, bool *present)
{
	char buf[4096];
	if (!coredump_xattr(fd, name, buf, sizeof(buf)))
		return NULL;
	/* Printed on a terminal: no control characters from the file. */
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	*present = true;
	return strdup(buf);
}

/* systemd-coredump's metadata, when the file carries it (absent: nothing). */
static void read_coredump_meta(struct td_core *core, int fd)
{
	struct td_coredump_meta *m = &core->coredump;
	m->pid = coredump_number(fd, "user.coredump.pid", &m->present);
	m->uid = coredump_number(fd, "user.coredump.uid", &m->present);
	m->gid = coredump_number(fd, "user.coredump.gid", &m->present);
	m->signal = coredump_number(fd, "user.coredump.signal", &m->present);
	m->timestamp_us = coredump_number(fd, "user.coredump.timestamp", &m->present);
	char buf[64], *end;
	if (coredump_xattr(fd, "user.coredump.rlimit", buf, sizeof(buf)) && buf[0] >= '0' && buf[0] <= '9') {
		errno = 0;
		unsigned long long v = strtoull(buf, &end, 10);
		if (!errno && !*end) {
			m->rlimit = v;
			m->has_rlimit = m->present = true;
		}
	}
	m->comm = coredump_string(fd, "user.coredump.comm", &m->present);
	m->exe = coredump_string(fd, "user.coredump.exe", &m->present);
	m->hostname = coredump_string(fd, "user.coredump.hostname", &m->present);
}

/* A compressed core: core->fd becomes the decompressed copy. */
static struct td_error *decompress(struct td_core *core, uint64_t max_size,
				   const struct td_decompress_progress *progress, struct stat *st)
{
	unsigned char head[8];
	ssize_t n = pread(core->fd, head, sizeof(head), 0);
	if (n <= 0 || td_compression_detect(head, (size_t)n) == TD_COMPRESSION_NONE)
		return NULL;
	struct td_decompressed out;
	td_timing_mark("open core");
	struct td_error *err = td_decompress_fd_progress(core->fd, core->path, max_size, progress, &out);
	if (err)
		return err;
	td_timing_mark("decompress core");
	close(core->fd);
	core->fd = out.fd;
	core->compression = out.kind;
	core->compressed_size = (uint64_t)st->st_size;
	if (fstat(core->fd, st) < 0)
		return td_error_format(TD_ERR_TARGET, "cannot read the decompressed core file %s: %s",
				       core->path, strerror(errno));
	return NULL;
}

struct td_error *td_core_open(const char *path, struct td_core **ret)
{
	return td_core_open_max(path, 0, NULL, ret);
}

struct td_error *td_core_open_max(const char *path, uint64_t max_size,
				  const struct td_decompress_progress *progress, struct td_core **ret)
{
	struct td_error *err = NULL;
	struct td_core *core = calloc(1, sizeof(*core));
	if (!core)
		return &td_enomem;
	core->fd = -1;
	core->path = strdup(path);
	if (!core->path) {
		free(core);
		return &td_enomem;
	}
	core->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (core->fd < 0) {
		err = td_error_format(TD_ERR_TARGET, "cannot open %s: %s%s", path, strerror(errno),
				      errno == ENOENT ? "\nTARGET is a process id (digits) or the path of a core file." : "");
		goto fail;
	}
	struct stat st;
	if (fstat(core->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err = td_error_format(TD_ERR_TARGET, "%s is not a regular file, so not a core file", path);
		goto fail;
	}
	read_coredump_meta(core, core->fd);
	td_journal_coredump(&core->coredump, path);
	if ((err = decompress(core, max_size, progress, &st)))
		goto fail;
	core->size = (size_t)st.st_size;
	/* Said of a compressed file: what it held once decompressed. */
	char held[64] = "";
	if (core->compression)
		snprintf(held, sizeof(held), " (what its %s data holds)", td_compression_name(core->compression));
	if (core->size < sizeof(Elf64_Ehdr) || core->size < 4) {
		err = td_error_format(TD_ERR_TARGET,
			"%s is not an ELF core file (%s %zu bytes long)\n"
			"Give the path of a core dump (made by the kernel or by `gcore PID`).",
			path, core->compression ? "decompressed, it is" : "it is", core->size);
		goto fail;
	}
	core->image = mmap(NULL, core->size, PROT_READ, MAP_PRIVATE, core->fd, 0);
	if (core->image == MAP_FAILED) {
		core->image = NULL;
		err = td_error_format(TD_ERR_TARGET, "cannot map %s: %s", path, strerror(errno));
		goto fail;
	}
	if (memcmp(core->image, ELFMAG, SELFMAG) != 0) {
		err = td_error_format(TD_ERR_TARGET,
			"%s is not an ELF core file%s\n"
			"Give the path of a core dump (made by the kernel or by `gcore PID`).", path, held);
		goto fail;
	}
	elf_version(EV_CURRENT);
	core->elf = elf_memory((char *)core->image, core->size);
	GElf_Ehdr eh;
	if (!core->elf || !gelf_getehdr(core->elf, &eh)) {
		err = td_error_format(TD_ERR_TARGET, "%s is a corrupt ELF file: %s", path, elf_errmsg(-1));
		goto fail;
	}
	if (eh.e_type != ET_CORE) {
		err = td_error_format(TD_ERR_TARGET,
			"%s is not a core file: it is %s\n"
			"To look at a running program, pass its process id; to read a core, "
			"pass the core (and --exe %s if taskdbg cannot find the executable).",
			path, elf_type_name(eh.e_type), path);
		goto fail;
	}
	if (eh.e_machine != EM_X86_64 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
		err = td_error_format(TD_ERR_TARGET,
			"%s is a core file of another architecture (ELF machine %u)\n"
			"taskdbg reads x86_64 cores; analyse this one on a matching machine.",
			path, (unsigned)eh.e_machine);
		goto fail;
	}
	size_t phnum;
	if (elf_getphdrnum(core->elf, &phnum) != 0) {
		err = td_error_format(TD_ERR_TARGET, "%s is a corrupt core file: %s", path, elf_errmsg(-1));
		goto fail;
	}
	core->segments = calloc(phnum ? phnum : 1, sizeof(*core->segments));
	if (!core->segments) {
		err = &td_enomem;
		goto fail;
	}
	/* Every size checked without overflow: offsets and sizes come from the file. */
	uint64_t needed = 0;
	bool corrupt = false;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(core->elf, (int)i, &ph) ||
		    (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE))
			continue;
		if (ph.p_filesz > UINT64_MAX - ph.p_offset ||
		    (ph.p_type == PT_LOAD && (ph.p_filesz > ph.p_memsz ||
					      ph.p_memsz > UINT64_MAX - ph.p_vaddr)))
			corrupt = true;
		else if (ph.p_offset + ph.p_filesz > needed)
			needed = ph.p_offset + ph.p_filesz;
	}
	if (corrupt) {
		err = td_error_format(TD_ERR_TARGET,
			"core file %s is corrupt: a segment's offset or size is impossible\n"
			"Make a new core with `ulimit -c unlimited` or `gcore PID`.", path);
		goto fail;
	}
	if (needed > core->size) {
		err = td_error_format(TD_ERR_TARGET,
			"core file %s is truncated: it has %zu of its %llu bytes%s\n"
			"The dump was cut short (a `ulimit -c` limit, a full disk, or a copy that did "
			"not finish%s). Make a new core with `ulimit -c unlimited` or `gcore PID`.",
			path, core->size, (unsigned long long)needed,
			core->compression ? " once decompressed" : "",
			core->compression || core->coredump.present
			? "; systemd-coredump cuts cores over ProcessSizeMax= and ExternalSizeMax= "
			  "of /etc/systemd/coredump.conf" : "");
		goto fail;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(core->elf, (int)i, &ph))
			continue;
		if (ph.p_type == PT_NOTE) {
			err = parse_notes(core, &ph);
			if (err)
				goto fail;
		} else if (ph.p_type == PT_LOAD) {
			core->segments[core->nsegments++] = (struct td_core_segment){
				ph.p_vaddr, ph.p_memsz, ph.p_offset, ph.p_filesz };
		}
	}
	if (core->nthreads == 0) {
		err = td_error_format(TD_ERR_TARGET,
			"core file %s holds no threads (no NT_PRSTATUS notes)\n"
			"It is damaged or was not made by the kernel or gcore.", path);
		goto fail;
	}
	if (!core->pid)
		core->pid = core->threads[0].tid;
	*ret = core;
	return NULL;
fail:
	td_core_destroy(core);
	return err;
}

const struct td_core_file *td_core_file_at(const struct td_core *core, uint64_t addr)
{
	for (size_t i = 0; i < core->nfiles; i++)
		if (addr >= core->files[i].start && addr < core->files[i].end)
			return &core->files[i];
	return NULL;
}

/* Pages the core left out (file-backed text, say) come from the file itself. */
static size_t read_from_mapped_file(struct td_core *core, uint64_t addr, void *buf, size_t len)
{
	struct td_core_file *f = (struct td_core_file *)td_core_file_at(core, addr);
	if (!f)
		return 0;
	if (f->fd == -1) {
		/*
		 * Paths come from the core: never block on a FIFO, never take a
		 * terminal, never read a device. Regular files only.
		 */
		f->fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		struct stat st;
		if (f->fd >= 0 && (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))) {
			close(f->fd);
			f->fd = -1;
		}
		if (f->fd < 0)
			f->fd = -2;
	}
	if (f->fd < 0)
		return 0;
	uint64_t room = f->end - addr;
	if (len > room)
		len = (size_t)room;
	ssize_t n = pread(f->fd, buf, len, (off_t)(f->offset + (addr - f->start)));
	return n < 0 ? 0 : (size_t)n;
}

size_t td_core_read(struct td_core *core, uint64_t addr, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		uint64_t a = addr + done;
		const struct td_core_segment *seg = NULL;
		for (size_t i = 0; i < core->nsegments; i++) {
			if (a >= core->segments[i].vaddr && a - core->segments[i].vaddr < core->segments[i].memsz) {
				seg = &core->segments[i];
				break;
			}
		}
		if (!seg) {
			/*
			 * No segment at all: gdb's gcore leaves out file-backed
			 * mappings it never saw written (.rodata, text), where the
			 * kernel writes one with no bytes. Both come from the file.
			 */
			size_t n = read_from_mapped_file(core, a, (char *)buf + done, len - done);
			if (n == 0)
				break;
			done += n;
			continue;
		}
		uint64_t off = a - seg->vaddr;
		size_t chunk = len - done;
		size_t n;
		if (off < seg->filesz) {
			if (chunk > seg->filesz - off)
				chunk = (size_t)(seg->filesz - off);
			memcpy((char *)buf + done, core->image + seg->offset + off, chunk);
			n = chunk;
		} else {
			if (chunk > seg->memsz - off)
				chunk = (size_t)(seg->memsz - off);
			n = read_from_mapped_file(core, a, (char *)buf + done, chunk);
			if (n == 0)
				break;
		}
		done += n;
	}
	return done;
}

void td_core_destroy(struct td_core *core)
{
	if (!core)
		return;
	for (size_t i = 0; i < core->nfiles; i++) {
		if (core->files[i].fd >= 0)
			close(core->files[i].fd);
		free(core->files[i].path);
	}
	free(core->files);
	free(core->coredump.comm);
	free(core->coredump.exe);
	free(core->coredump.hostname);
	free(core->coredump.cmdline);
	free(core->coredump.unit);
	free(core->segments);
	free(core->threads);
	if (core->elf)
		elf_end(core->elf);
	if (core->image)
		munmap((void *)core->image, core->size);
	if (core->fd >= 0)
		close(core->fd);
	free(core->path);
	free(core);
}
