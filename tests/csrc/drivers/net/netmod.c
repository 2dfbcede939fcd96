/* netmod.c: stands in for a kernel module; its static helper() shares a name with a.c's and b.c's */
static __attribute__((noinline)) int helper(int v)
{
	return v * 3;
}

int netmod_rx(int n)
{
	return helper(n) + 1;
}
