#include "util/map.h"

#include <stdlib.h>

#include "util/hash.h"

static bool grow(struct td_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	uint64_t *keys = calloc(cap, sizeof(*keys)), *values = calloc(cap, sizeof(*values));
	if (!keys || !values) {
		free(keys);
		free(values);
		return false;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = td_hash_slot(m->keys[i], cap);
		while (keys[j])
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		values[j] = m->values[i];
	}
	free(m->keys);
	free(m->values);
	m->keys = keys;
	m->values = values;
	m->cap = cap;
	return true;
}

uint64_t *td_map_put(struct td_map *m, uint64_t key, bool *added)
{
	if ((m->count + 1) * 2 > m->cap && !grow(m))
		return NULL;
	size_t j = td_hash_slot(key + 1, m->cap);
	while (m->keys[j] && m->keys[j] != key + 1)
		j = (j + 1) & (m->cap - 1);
	*added = !m->keys[j];
	if (*added) {
		m->keys[j] = key + 1;
		m->values[j] = 0;
		m->count++;
	}
	return &m->values[j];
}

uint64_t *td_map_get(const struct td_map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	size_t j = td_hash_slot(key + 1, m->cap);
	while (m->keys[j]) {
		if (m->keys[j] == key + 1)
			return &m->values[j];
		j = (j + 1) & (m->cap - 1);
	}
	return NULL;
}

void td_map_free(struct td_map *m)
{
	free(m->keys);
	free(m->values);
	*m = (struct td_map){ 0 };
}
