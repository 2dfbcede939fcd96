/* inl.h: a static inline helper, inlined in one caller of inl.c and kept out of line for another (its address is taken) */
#ifndef INL_H
#define INL_H

extern int global_counter;

static inline int mix(int v)
{
	return v * 31 + global_counter;
}

#endif
