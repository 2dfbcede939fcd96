/* inlined.c: inlined calls ftrace cannot see (tests/test_symbol_map_inlined.py). host_a inlines helpers, one inside a
   block and one inside another; mid() is inlined into host_a but called out of line from host_slow (built at -O0);
   host_b calls twice() twice on one line; kept_out() is never inlined; host_c inlines nothing. */
#include "inlined.h"

volatile int sink;

static inline int mid(int v)
{
	return v * 7 - sink;
}

static __attribute__((noinline)) int kept_out(int v)
{
	return v ^ 0x55;
}

__attribute__((noinline)) int host_a(int n)
{
	int r = twice(n);
	if (n > 3) {
		int t = square_plus(n + sink);
		r += t * sink;
	}
	return r + kept_out(n) + mid(n);
}

__attribute__((noinline)) int host_b(int n)
{
	return kept_out(n) + twice(n + 1) * twice(n + sink);
}

__attribute__((noinline)) int host_c(int n)
{
	return kept_out(n) - 1;
}

__attribute__((optimize("O0"))) int host_slow(int n)
{
	return mid(n) + 3;
}

int main(int argc, char **argv)
{
	(void)argv;
	sink = host_a(argc) + host_b(argc) + host_c(argc) + host_slow(argc);
	return 0;
}
