/*
 * An open-addressing hash map from 64-bit keys to 64-bit values: linear
 * probing, Fibonacci hashing (util/hash.h), grown at half full. The one map
 * of taskdbg's hot paths (DIE offsets to parents, list nodes seen, Lua
 * tables converted), instead of one written by hand per file. A key may be
 * anything but UINT64_MAX; pointers go in as (uintptr_t).
 */
#ifndef TD_UTIL_MAP_H
#define TD_UTIL_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct td_map {
	uint64_t *keys;      /* key + 1; 0: an empty slot */
	uint64_t *values;
	size_t cap, count;   /* cap: 0 or a power of two */
};

/*
 * Where key's value lives, the key added (value 0, *added true) if it was
 * not there: NULL when out of memory. The pointer is valid until the next
 * td_map_put.
 */
uint64_t *td_map_put(struct td_map *m, uint64_t key, bool *added);

/* Where key's value lives, or NULL if key is not in m. */
uint64_t *td_map_get(const struct td_map *m, uint64_t key);

void td_map_free(struct td_map *m);

#endif
