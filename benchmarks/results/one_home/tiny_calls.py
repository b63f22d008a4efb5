# Per-call time of tiny ops (one thread), for comparing two trees: python tiny_calls.py TREE_ROOT
import sys, time, statistics
sys.path.insert(0, sys.argv[1])
import torch, deepops, torch.nn.functional as F
assert deepops.__file__.startswith(sys.argv[1])
torch.set_num_threads(1)
x=torch.randn(1,1,4,4); w=torch.randn(1,1,3,3); v=torch.randn(4)
cases={"relu":lambda: deepops.relu(v), "conv2d":lambda: deepops.conv2d(x,w,padding=1), "max_pool2d":lambda: deepops.max_pool2d(x,2),
       "max_pool2d_cl": lambda: deepops.max_pool2d(x.contiguous(memory_format=torch.channels_last),2)}
out=[]
for k,f in cases.items():
    for _ in range(200): f()
    ts=[]
    for _ in range(7):
        t=time.perf_counter()
        for _ in range(300): f()
        ts.append((time.perf_counter()-t)/300)
    out.append(f"{k} {statistics.median(ts)*1e6:.1f}us")
print(sys.argv[1], *out)
