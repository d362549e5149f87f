/* Unit tests of util/map: the open-addressing map of taskdbg's hot paths. */
#include <stdlib.h>

#include "check.h"
#include "util/map.h"

int main(void)
{
	struct td_map m = { 0 };
	CHECK(td_map_get(&m, 0) == NULL);
	bool added;
	/* Key 0 is a key like any other (DIE offsets, page numbers start there). */
	uint64_t *v = td_map_put(&m, 0, &added);
	CHECK(v && added && *v == 0);
	*v = 7;
	v = td_map_put(&m, 0, &added);
	CHECK(v && !added && *v == 7);
	/* Keys at a regular stride (task cells, pages), through several growths. */
	for (uint64_t i = 1; i <= 100000; i++) {
		v = td_map_put(&m, i * 4096, &added);
		CHECK(v && added);
		if (v)
			*v = i;
	}
	CHECK(m.count == 100001);
	CHECK(m.cap >= 2 * m.count);
	size_t bad = 0;
	for (uint64_t i = 1; i <= 100000; i++) {
		const uint64_t *got = td_map_get(&m, i * 4096);
		bad += !got || *got != i;
	}
	CHECK(bad == 0);
	CHECK(td_map_get(&m, 4095) == NULL);
	CHECK(td_map_get(&m, UINT64_MAX - 1) == NULL);
	v = td_map_get(&m, 0);
	CHECK(v && *v == 7);
	td_map_free(&m);
	CHECK(m.cap == 0 && td_map_get(&m, 4096) == NULL);
	return CHECK_DONE();
}
