"""Tabulates `perf stat -x,` outputs (*.stat in the directory given) written by ab_throughput.py PROFILE."""
import glob, sys
rows={}
for f in sorted(glob.glob(sys.argv[1]+'/*.stat')):
    d={}
    for line in open(f):
        p=line.strip().split(',')
        if len(p)>3 and p[0].replace('.','').isdigit():
            d[p[2].replace('syscalls:sys_enter_','').replace('raw_syscalls:sys_enter','syscalls')]=float(p[0])
    rows[f.split('/')[-1][:-5]]=d
keys=['task-clock','context-switches','syscalls','poll','ppoll','recvfrom','read','sendto','write','epoll_wait','epoll_ctl','getpid','getrandom','rt_sigprocmask']
print('%-32s'%'run'+''.join('%11s'%k[:10] for k in keys))
for r,d in rows.items(): print('%-32s'%r+''.join('%11.0f'%d.get(k,0) for k in keys))
