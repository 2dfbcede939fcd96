/* fsmod.c: a second stand-in kernel module; its helper() shares a name with a.c's, b.c's and netmod.c's, its
 * exported scale() with b.c's static one: the same names built in and in two modules */
static __attribute__((noinline)) int helper(int v)
{
	return v - 7;
}

__attribute__((noinline)) int scale(int v, int mode)
{
	int r = 0;
	for (int i = 0; i < v; i++)
		r += i * mode;
	return r;
}

int fsmod_read(int n)
{
	return helper(n) + scale(n, 5);
}
