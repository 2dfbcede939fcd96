/* api.h: a header with an out-of-line static function used by two files */
#ifndef API_H
#define API_H

struct point {
	int x;
	int y;
	const char *label;
};

extern int global_counter;

static __attribute__((noinline)) int header_twice(int v)
{
	return v * 3 + global_counter;
}

int a_entry(int n);
int b_entry(int n);

#endif
