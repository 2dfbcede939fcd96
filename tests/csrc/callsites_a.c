/* callsites_a.c: noinline functions calling each other on distinct lines, a static helper() that b has too */
#include "callsites.h"

int sink;
int b_entry(int n);

__attribute__((noinline)) int leaf(int v)
{
	return v * 3 + sink;
}

static __attribute__((noinline)) int helper(int v)
{
	int r = leaf(v);
	return r + leaf(v + 7);
}

__attribute__((noinline)) int inlines_it(int v)
{
	int r = wrapped(v);
	sink += r;
	return r + helper(v);
}

__attribute__((noinline)) int middle(int v)
{
	int r = leaf(v);
	sink += r;
	r += helper(r);
	sink += r;
	return r + inlines_it(r);
}

/* its call is its last act: GCC jumps to leaf (a tail call), which returns to main, never here */
__attribute__((noinline)) int tail_caller(int v)
{
	sink += v;
	return leaf(v + 1);
}

int main(int argc, char **argv)
{
	(void)argv;
	int r = middle(argc) + tail_caller(argc);
	sink += r;
	r += b_entry(argc);
	sink += r;
	return r;
}
