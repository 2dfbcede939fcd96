/* b.c: the other helper(), and functions GCC clones (.constprop, .isra, .part) */
#include <stdio.h>
#include <string.h>
#include "api.h"

static __attribute__((noinline)) int helper(int v)
{
	return v * 42;
}

static __attribute__((noinline)) int scale(int v, int mode)
{
	int r = 0;
	for (int i = 0; i < v; i++)
		r += (mode == 3) ? i * 3 : i ^ mode;
	return r;
}

static __attribute__((noinline)) int only_x(const struct point *p)
{
	int r = 0;
	for (int i = 0; i < p->x; i++)
		r += i * i;
	return r;
}

static int slow_count;
static int maybe_slow(int v)
{
	if (v < 100)
		return v;
	char buf[256];
	for (int i = 0; i < 200; i++) {
		snprintf(buf, sizeof(buf), "%d-%d", v, i);
		slow_count += (int)strlen(buf);
		if (buf[3] == '7')
			printf("%s\n", buf);
	}
	return slow_count;
}

int b_entry(int n)
{
	struct point p = { n, n + 1, "b" };
	return helper(n) + header_twice(n) + scale(n, 3) + scale(n + 1, 3) + only_x(&p)
		+ maybe_slow(n) + maybe_slow(n * 10) + maybe_slow(n * 100);
}

int main(int argc, char **argv)
{
	(void)argv;
	printf("%d %d\n", a_entry(argc), b_entry(argc));
	return 0;
}
