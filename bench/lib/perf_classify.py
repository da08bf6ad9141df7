#!/usr/bin/env python3
"""Reads `perf script -F ip,sym,dso` of a `perf record -g` file on stdin; prints self time by category
(the syscall a kernel sample happened in, libcrypto, libc memcpy, libssh, ...). See bench/README.md.
An optional argument, the profiled process's CPU seconds per GiB moved, adds each category's
share of it in s/GiB."""
import re, sys, collections
cats = collections.Counter(); total = 0
sysre = re.compile(r'(?:__x64_sys_|__do_sys_|__se_sys_)(\w+)')
def classify(frames):
    # frames: list of (sym, dso), innermost first
    sysname = None
    for i, (sym, dso) in enumerate(frames):
        if sym.startswith('entry_SYSCALL_64'):
            if i + 1 < len(frames):
                u = frames[i + 1][0]
                u = {'__libc_recv': 'recv', '__send': 'send', '__poll': 'poll', '__GI___poll': 'poll',
                     '__libc_read': 'read', '__libc_write': 'write', '__GI___libc_write': 'write',
                     '__GI___libc_read': 'read'}.get(u, u)
                sysname = re.sub(r'^(__GI_)?_*', '', u).split('.')[0]
            break
    if sysname is None:
        for sym, dso in frames:
            m = sysre.match(sym)
            if m: sysname = m.group(1)
    top_sym, top_dso = frames[0]
    if 'kernel' in top_dso or top_dso.startswith('['):
        if top_dso == '[vdso]': return 'user: vdso clock_gettime'
        if sysname: return f'kernel: sys_{sysname}'
        if any('asm_exc_page_fault' in s or 'exc_page_fault' in s for s, _ in frames): return 'kernel: page faults'
        if any('irq' in s.lower() for s, _ in frames): return 'kernel: irq/softirq (not in a syscall)'
        return 'kernel: other (' + top_sym + ')'
    if 'libcrypto' in top_dso:
        return 'user: libcrypto (AES-GCM)'
    if 'libc.so' in top_dso:
        if 'memmove' in top_sym or 'memcpy' in top_sym: return 'user: libc memcpy/memmove'
        if 'memset' in top_sym: return 'user: libc memset'
        if 'malloc' in top_sym or 'free' in top_sym or 'int_' in top_sym or 'realloc' in top_sym: return 'user: libc malloc/free'
        return 'user: libc syscall wrappers/other (' + top_sym + ')' if top_sym in () else 'user: libc other'
    if 'libssh' in top_dso: return 'user: libssh'
    if 'alknet' in top_dso: return 'user: alknet-agent'
    if top_dso.endswith('sshd') or '/sshd' in top_dso: return 'user: sshd'
    return 'user: other ' + top_dso.split('/')[-1]
frames = []
def flush():
    global total, frames
    if frames:
        cats[classify(frames)] += 1; total += 1
    frames = []
for line in sys.stdin:
    if not line.strip():
        flush(); continue
    if line[0] not in ' \t':
        flush(); continue
    parts = line.strip().split(None, 1)
    if len(parts) < 2: continue
    rest = parts[1]
    m = re.match(r'(.*) \((.*)\)$', rest)
    if not m: continue
    sym = re.sub(r'\+0x[0-9a-f]+$', '', m.group(1))
    frames.append((sym, m.group(2)))
flush()
cpu_per_gib = float(sys.argv[1]) if len(sys.argv) > 1 else None
print(f'samples {total}')
for k, v in cats.most_common():
    if v * 1000 >= total * 5:
        cost = f'  {cpu_per_gib * v / total:5.2f} s/GiB' if cpu_per_gib is not None else ''
        print(f'{100.0*v/total:6.1f}%{cost}  {k}')
