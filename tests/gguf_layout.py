"""Where a GGUF file's tensors are, for tests that read or damage them.

    import gguf_layout
    f = gguf_layout.read(path)   # f.data (bytes), f.alignment, f.tensors
    ne, type, offset = f.tensors['blk.0.ffn_count']   # offset from the file start
    f.i32('blk.0.ffn_count')     # an I32 tensor's values

Run as a script it prints one line per tensor: name, type, shape, offset.
"""
import struct
import sys

_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class File:
    def __init__(self, data):
        self.data = data
        self.alignment = 32
        self.tensors = {}
        self._pos = 8
        n_tensors, n_kv = self._take('<QQ')
        for _ in range(n_kv):
            key = self._str()
            t, = self._take('<I')
            if key == 'general.alignment':
                self.alignment, = struct.unpack_from('<I', data, self._pos)
            self._skip(t)
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            nd, = self._take('<I')
            ne = self._take('<%dQ' % nd)
            t, off = self._take('<IQ')
            infos.append((name, ne, t, off))
        base = (self._pos + self.alignment - 1) // self.alignment * self.alignment
        for name, ne, t, off in infos:
            self.tensors[name] = (ne, t, base + off)

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self._pos)
        self._pos += struct.calcsize(fmt)
        return v

    def _str(self):
        n, = self._take('<Q')
        s = self.data[self._pos:self._pos + n].decode()
        self._pos += n
        return s

    def _skip(self, t):
        if t == 8:
            self._str()
        elif t == 9:
            et, n = self._take('<IQ')
            for _ in range(n):
                self._skip(et)
        else:
            self._pos += _SIZES[t]

    def i32(self, name):
        ne, _, off = self.tensors[name]
        return struct.unpack_from('<%di' % ne[0], self.data, off)


def read(path):
    with open(path, 'rb') as f:
        return File(f.read())


if __name__ == '__main__':
    f = read(sys.argv[1])
    for name, (ne, t, off) in f.tensors.items():
        print(name, t, 'x'.join(map(str, ne)), off)
