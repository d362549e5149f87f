/*
 * Fibonacci hashing for open-addressing tables keyed by addresses: keys
 * allocated at regular strides (tables, task cells) would make long runs
 * for linear probing with a plain shift. FNV-1a for bytes (names, memory).
 */
#ifndef TD_UTIL_HASH_H
#define TD_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The home slot of key in a table of cap slots (cap a power of two). */
static inline size_t td_hash_slot(uint64_t key, size_t cap)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* FNV-1a, 64 bits: h continues a hash (start with TD_FNV_OFFSET) over n bytes. */
#define TD_FNV_OFFSET 0xcbf29ce484222325ull
static inline uint64_t td_hash_fnv1a(uint64_t h, const void *bytes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const unsigned char *)bytes)[i]) * 0x100000001b3ull;
	return h;
}

#endif
