/* The op list of `deepzip export --web` (model.dzrt): dzrt's records as bytes, so that one
 * compiled runtime runs any exported network (export --c compiles them into model.c instead).
 * Written by src/deepzip/export/oplist.py; all integers little-endian.
 *
 *   0   "DZRT"
 *   4   u32 abi                 DZRT_ABI
 *   8   u16 n_ops, n_bufs, input, output
 *   16  u32 packed_bytes, arena_bytes
 *   24  u32 file_bytes, file_crc32     the .dzip it was planned for (zlib's crc32)
 *   32  n_bufs x dzrt_buf       (8 bytes each)
 *   ..  n_ops x dzrt_op         (144 bytes each, the layout of include/dzrt.h: no pointers)
 */
#ifndef DZW_OPLIST_H
#define DZW_OPLIST_H
#define DZW_OPLIST_HEAD 32
#endif
