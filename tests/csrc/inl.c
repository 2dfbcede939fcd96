/* inl.c: mix() (inl.h) both inlined and out of line; a static function named like a.c's and b.c's helper() */
#include "inl.h"

int (*mix_hook)(int) = mix;

static __attribute__((noinline)) int helper(int v)
{
	return v - 5;
}

int inl_entry(int n)
{
	return mix(n) + mix_hook(n) + helper(n);
}
