/* icf.c: two functions with identical code, both address-taken. GCC -O2 (identical code folding)
   emits fold_thunk's code but leaves its DWARF entry without low_pc: only the named entry says where it is from. */
#include <stdio.h>

struct ops {
	int (*rmdir)(int);
	int (*unlink)(int);
};

int fold_kept(int v)
{
	printf("%d\n", v);
	return -5 * v;
}

int fold_thunk(int v)
{
	printf("%d\n", v);
	return -5 * v;
}

struct ops folded_ops = { fold_kept, fold_thunk };

int main(int argc, char **argv)
{
	(void)argv;
	return folded_ops.rmdir(argc) + folded_ops.unlink(argc);
}
