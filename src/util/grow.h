/* Growing an array by doubling, for the append loops that share it. */
#ifndef TD_UTIL_GROW_H
#define TD_UTIL_GROW_H

#include <stdlib.h>

/*
 * array, with room for at least need elements of size bytes (*cap updated):
 * doubled from 16 as needed. NULL (array untouched) when memory runs out.
 */
static inline void *td_grow(void *array, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return array;
	size_t new_cap = *cap ? *cap : 16;
	while (new_cap < need)
		new_cap *= 2;
	void *grown = reallocarray(array, new_cap, size);
	if (grown)
		*cap = new_cap;
	return grown;
}

#endif
