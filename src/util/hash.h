/*
 * Fibonacci hashing for open-addressing tables keyed by addresses: keys
 * allocated at regular strides (tables, task cells) would make long runs
 * for linear probing with a plain shift.
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

#endif
