/* a.c: a static helper() with the same name as b.c's, a global and a struct */
#include "api.h"

int global_counter = 7;
struct point origin = { 1, 2, "origin" };

static __attribute__((noinline)) int helper(int v)
{
	return v + global_counter;
}

int a_entry(int n)
{
	return helper(n) + header_twice(n) + origin.x;
}
