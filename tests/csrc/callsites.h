/* callsites.h: a static inline helper that makes a real call; inlined into one caller, not into another */
extern int sink;
int leaf(int v);

static inline int wrapped(int v)
{
	int r = leaf(v);
	return r + leaf(r + 1);
}
