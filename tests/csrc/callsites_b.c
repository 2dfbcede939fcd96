/* callsites_b.c: the other static helper() (a different size), wrapped() kept out of line, a clone */
#include "callsites.h"

static __attribute__((noinline)) int helper(int v)
{
	int r = leaf(v);
	sink += r;
	r += leaf(r ^ 5);
	sink ^= r;
	r += leaf(r * 9);
	return r;
}

/* always called with mode 3: GCC makes a clone, scaled.constprop.0, and the trace names that copy */
static __attribute__((noinline)) int scaled(int v, int mode)
{
	int r = leaf(v);
	if (mode == 3)
		r += leaf(r * mode);
	return r;
}

__attribute__((noinline)) int b_entry(int n)
{
	int (*volatile fn)(int) = wrapped;  /* address taken: wrapped has an out-of-line copy here */
	int r = helper(n);
	sink += r;
	r += scaled(n, 3);
	sink += r;
	r += scaled(r, 3);
	return r + fn(n);
}
