/*
 * speedscope's file format (https://www.speedscope.app/file-format-schema.json):
 * one "sampled" profile, a sample per distinct stack (frame indexes, root
 * first) weighed by its count. Frames are numbered in the order the sorted
 * stacks meet them, so equal profiles give equal files.
 */
#include "profile/internal.h"

#include <json-c/json.h>
#include <stdlib.h>

#include "config.h"
#include "util/map.h"

#define SCHEMA "https://www.speedscope.app/file-format-schema.json"

/* Adds value to object under key, or to an array: false when out of memory (value freed). */
static bool put(struct json_object *object, const char *key, struct json_object *value)
{
	if (value && json_object_object_add(object, key, value) == 0)
		return true;
	json_object_put(value);
	return false;
}

static bool push(struct json_object *array, struct json_object *value)
{
	if (value && json_object_array_add(array, value) == 0)
		return true;
	json_object_put(value);
	return false;
}

struct speedscope {
	struct json_object *frames, *samples, *weights;
	struct td_map index;   /* interned name -> its index in frames */
};

static bool add_frame_index(struct speedscope *s, struct json_object *sample, const char *name)
{
	bool added;
	uint64_t *index = td_map_put(&s->index, (uintptr_t)name, &added);
	if (!index)
		return false;
	if (added) {
		struct json_object *frame = json_object_new_object();
		*index = s->index.count - 1;
		if (!push(s->frames, frame) || !put(frame, "name", json_object_new_string(name)))
			return false;
	}
	return push(sample, json_object_new_int64((int64_t)*index));
}

static bool add_samples(struct speedscope *s, const struct td_profile *p)
{
	size_t n;
	const struct td_profile_stack *const *stacks = td_profile_sorted(p, &n);
	for (size_t i = 0; i < n; i++) {
		struct json_object *sample = json_object_new_array();
		if (!push(s->samples, sample))
			return false;
		for (size_t j = 0; j < stacks[i]->n; j++) {
			if (!add_frame_index(s, sample, stacks[i]->frames[j]))
				return false;
		}
		if (!push(s->weights, json_object_new_uint64(stacks[i]->count)))
			return false;
	}
	return true;
}

/* The profile's object, into profiles: false when out of memory. */
static bool add_profile(struct json_object *profiles, struct speedscope *s, const char *title,
			uint64_t total)
{
	struct json_object *profile = json_object_new_object();
	if (!push(profiles, profile) ||
	    !put(profile, "type", json_object_new_string("sampled")) ||
	    !put(profile, "name", json_object_new_string(title)) ||
	    !put(profile, "unit", json_object_new_string("none")) ||
	    !put(profile, "startValue", json_object_new_int(0)) ||
	    !put(profile, "endValue", json_object_new_uint64(total)))
		return false;
	s->samples = json_object_new_array();
	if (!put(profile, "samples", s->samples))
		return false;
	s->weights = json_object_new_array();
	return put(profile, "weights", s->weights);
}

/*
 * The file's object, but for its samples (s has the arrays they go in):
 * false when out of memory. Each object is owned by its parent as soon as it
 * is made, so freeing file frees everything.
 */
static bool fill_file(struct json_object *file, struct speedscope *s, const char *title,
		      const char *exporter, uint64_t total)
{
	if (!put(file, "$schema", json_object_new_string(SCHEMA)))
		return false;
	struct json_object *shared = json_object_new_object();
	if (!put(file, "shared", shared))
		return false;
	s->frames = json_object_new_array();
	if (!put(shared, "frames", s->frames))
		return false;
	struct json_object *profiles = json_object_new_array();
	return put(file, "profiles", profiles) && add_profile(profiles, s, title, total) &&
	       put(file, "name", json_object_new_string(title)) &&
	       put(file, "activeProfileIndex", json_object_new_int(0)) &&
	       put(file, "exporter", json_object_new_string(exporter));
}

struct td_error *td_profile_write_speedscope(FILE *f, const struct td_profile *p,
					     const struct td_profile_meta *meta)
{
	char *title = td_profile_clean(meta && meta->title ? meta->title : "taskdbg profile");
	char *exporter = td_profile_clean(meta && meta->exporter ? meta->exporter : "taskdbg " TD_VERSION);
	struct json_object *file = json_object_new_object();
	struct speedscope s = { 0 };
	const char *text = NULL;
	if (title && exporter && file &&
	    fill_file(file, &s, title, exporter, td_profile_total(p)) && add_samples(&s, p))
		text = json_object_to_json_string_ext(file, JSON_C_TO_STRING_PLAIN |
							     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text) {
		fputs(text, f);
		putc('\n', f);
	}
	json_object_put(file);
	td_map_free(&s.index);
	free(title);
	free(exporter);
	return text ? NULL : &td_enomem;
}
