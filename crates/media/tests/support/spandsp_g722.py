#!/usr/bin/env python3
"""G.722 at 64 kbit/s by spandsp (Debian's libspandsp2, the library
baresip's g722 module uses): an implementation independent of ours, for
bit-exact comparison.

    spandsp_g722.py encode < pcm16le-16kHz > codes     (one byte per 2 samples)
    spandsp_g722.py decode < codes > pcm16le-16kHz

Each run starts from a fresh codec state, as a call does.
"""
import ctypes
import ctypes.util
import sys


def library():
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        return ctypes.CDLL(name)
    except OSError as e:
        sys.exit(f"libspandsp is missing ({e}): apt-get install libspandsp2")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    data = sys.stdin.buffer.read()
    lib = library()
    if mode == "encode":
        lib.g722_encode_init.restype = ctypes.c_void_p
        lib.g722_encode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.g722_encode.restype = ctypes.c_int
        lib.g722_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_int16), ctypes.c_int]
        samples = len(data) // 2
        pcm = (ctypes.c_int16 * samples).from_buffer_copy(data[: samples * 2])
        out = ctypes.create_string_buffer(samples)
        state = lib.g722_encode_init(None, 64000, 0)
        n = lib.g722_encode(state, out, pcm, samples)
        sys.stdout.buffer.write(out.raw[:n])
    elif mode == "decode":
        lib.g722_decode_init.restype = ctypes.c_void_p
        lib.g722_decode_init.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.g722_decode.restype = ctypes.c_int
        lib.g722_decode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16),
                                    ctypes.c_char_p, ctypes.c_int]
        out = (ctypes.c_int16 * (2 * len(data)))()
        state = lib.g722_decode_init(None, 64000, 0)
        n = lib.g722_decode(state, out, data, len(data))
        sys.stdout.buffer.write(bytes(out)[: 2 * n])
    else:
        sys.exit("usage: spandsp_g722.py encode|decode")


main()
