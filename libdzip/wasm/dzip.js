// dzip.js: .dzip files decoded by libdzip compiled to WebAssembly (build/dzip.wasm), and the
// networks of `deepzip export --web` run by dzrt from their codes. An ES module with no
// dependencies and no build step:
//
//   import { Dzip } from "./dzip.js";
//   const file = await Dzip.open(bytes);          // every tensor: Float32Array values, or codes
//   const m = await Dzip.model(bytes, opList);    // opList: the export's model.dzrt
//   const logits = m.predict(new Float32Array(m.inputSize));
//
// The module has no imports (no WASI, no glue): this file gives it every buffer from a bump
// pointer in its own memory. Each open() and model() gets a fresh instance of the compiled
// module, so nothing is ever freed by hand: an instance goes with the object that holds it, and
// a corrupt file cannot disturb another model. Failures are Errors whose message is libdzip's
// (or dzrt's) one sentence.

const DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"];
const ITEMSIZE = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };
const ENCODINGS = ["raw", "shared", "sparse", "alias"];
const POSITIONS = ["none", "dense", "sparse", "context"];
const DZ_OK = 0, DZ_E_ARENA = 2;
// dzw_tensor_info's fields (src/dzip_wasm.c)
const I = { dtype: 0, encoding: 1, positions: 2, target: 3, ndim: 4, numel: 5, dense: 6, scratch: 7, kept: 8, book: 9,
  name: 10, nameLen: 11, alias: 12, aliasLen: 13, scaled: 14, shape: 15 };
const PAGE = 65536;

let compiled = null;   // Promise<WebAssembly.Module>

async function compile(source) {
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return WebAssembly.compile(source);
  const url = source ?? new URL("./dzip.wasm", import.meta.url);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`dzip.wasm could not be fetched from ${url} (HTTP ${response.status}).`);
  // compileStreaming wants the application/wasm type; a server that sends another falls back.
  if (WebAssembly.compileStreaming && response.headers.get("content-type") === "application/wasm") {
    return WebAssembly.compileStreaming(response);
  }
  return WebAssembly.compile(await response.arrayBuffer());
}

function bytesOf(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`${what} must be an ArrayBuffer or a typed array, not ${typeof data}.`);
}

/** One instance of the module and its memory, handed out from a bump pointer. */
class Heap {
  constructor(instance) {
    this.x = instance.exports;
    this.memory = this.x.memory;
    this.top = Heap.align(this.x.__heap_base.value, 16);
  }

  static align(n, to) { return Math.ceil(n / to) * to; }

  alloc(bytes, align = 8) {
    const at = Heap.align(this.top, align);
    const end = at + bytes;
    if (end > 2 ** 32 - PAGE) throw new Error(`${end.toLocaleString("en")} bytes are more than WebAssembly's 4 GiB of memory.`);
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        throw new Error(`the browser cannot give WebAssembly ${end.toLocaleString("en")} bytes of memory.`);
      }
    }
    this.top = end;
    return at;
  }

  copyIn(data) {
    const at = this.alloc(data.byteLength);
    this.u8(at, data.byteLength).set(data);
    return at;
  }

  u8(at, n) { return new Uint8Array(this.memory.buffer, at, n); }

  text(at, n) { return new TextDecoder().decode(this.u8(at, n)); }

  cstring(at) {
    const all = new Uint8Array(this.memory.buffer, at);
    return this.text(at, all.indexOf(0));
  }
}

async function heap() {
  compiled ??= compile();
  let module;
  try {
    module = await compiled;
  } catch (e) {
    compiled = null;   // a later call may fetch again
    throw e;
  }
  return new Heap(await WebAssembly.instantiate(module, {}));
}

/** A decoded tensor: `values`, or for a shared (weight-shared) one `positions`, `codes` and `codebook`. */
export class Tensor {
  constructor(fields) { Object.assign(this, fields); }

  /** The tensor as one dense array (a shared one expanded: code 0 is 0.0, code k is codebook[k - 1]).
   *
   * Example: `file.get("fc1.weight").dense()` → Float32Array(235200) */
  dense() {
    if (this.values) return this.values;
    const out = new Float32Array(this.numel);
    for (let i = 0; i < this.positions.length; i++) out[this.positions[i]] = this.codebook[this.codes[i] - 1];
    return out;
  }
}

// The array type of libdzip's dense output for a dtype (dz_decode_dense: float32 for every
// float dtype, the elements' little-endian bytes otherwise; WebAssembly is little-endian).
function typed(dtype) {
  return { int64: BigInt64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array, uint8: Uint8Array,
    bool: Uint8Array }[dtype] ?? Float32Array;
}

function open(h, data) {
  const x = h.x;
  const at = h.copyIn(data);
  const f = h.alloc(x.dzw_file_bytes());
  const mark = h.top;
  let status = x.dz_open(f, at, data.byteLength, 0, 0);
  // A size error names the arena that would do; the second can only refine it (dzip.h: dz_open).
  for (let tries = 0; status === DZ_E_ARENA && tries < 3; tries++) {
    h.top = mark;
    const need = x.dz_needed(f);
    status = x.dz_open(f, at, data.byteLength, h.alloc(need), need);
  }
  if (status !== DZ_OK) throw new Error(h.cstring(x.dz_message(f)));
  return { at, f };
}

function check(h, f, status) {
  if (status !== DZ_OK) throw new Error(h.cstring(h.x.dz_message(f)));
}

/** A .dzip's header and tensors, decoded. */
export class DzipFile {
  constructor(fields) { Object.assign(this, fields); }

  /** The tensor named `name` (the last of that name, as Python's reader keeps), or undefined.
   *
   * Example: `file.get("fc1.bias").values[0]` */
  get(name) {
    for (let i = this.tensors.length - 1; i >= 0; i--) if (this.tensors[i].name === name) return this.tensors[i];
    return undefined;
  }
}

/** A network of `deepzip export --web`, its weights packed from the codes: predict() runs it. */
export class DzipModel {
  constructor(h, w, fields) {
    this.h = h;
    this.w = w;
    Object.assign(this, fields);
    this.x = h.alloc(4 * this.inputSize);
    this.y = h.alloc(4 * this.outputSize);
  }

  /** One inference: `input` holds inputSize floats (one sample, C order); returns the outputSize logits.
   *
   * Example: `const logits = m.predict(pixels); logits.indexOf(Math.max(...logits))` */
  predict(input) {
    if (!input || input.length !== this.inputSize) {
      throw new Error(`the model takes ${this.inputSize} input values per sample, and ${input?.length ?? 0} were given.`);
    }
    const mem = this.h.memory.buffer;
    new Float32Array(mem, this.x, this.inputSize).set(input);
    if (this.h.x.dzw_run(this.w, this.x, this.y) !== 0) throw new Error("the model was not initialised.");
    return new Float32Array(mem, this.y, this.outputSize).slice();
  }
}

export const Dzip = {
  /** Use this compiled module, bytes or URL for dzip.wasm instead of the one beside dzip.js
   * (e.g. in Node, where fetch cannot read files).
   *
   * Args: source: a WebAssembly.Module, the .wasm's bytes, or its URL.
   * Example: `await Dzip.load(fs.readFileSync("build/dzip.wasm"))` */
  async load(source) {
    compiled = compile(source);
    await compiled;
  },

  /** Validate and decode a .dzip file.
   *
   * Args: bytes: the file (ArrayBuffer or typed array); options.dense: every tensor as `values`
   *   (shared ones too, as deepzip.dzip.read_tensors gives them), default false: shared tensors
   *   as { positions: Uint32Array, codes: Uint16Array, codebook: Float32Array } (those with a
   *   scale per row, version 5, as `values`); options.copy:
   *   each array a copy of its own, decoded one at a time in a reused region, instead of a view
   *   of the decoder's memory (views cost no copy but keep that memory alive while any is held;
   *   past 2 GiB of tensors the arrays are copies anyway).
   * Returns: a DzipFile: version, header (arch, meta), tensors (name, shape, dtype, encoding,
   *   numel, values or positions + codes + codebook), fileBytes, denseBytes (the tensors at
   *   their dtypes' sizes).
   * Example: `const f = await Dzip.open(await (await fetch("model.dzip")).arrayBuffer())` */
  async open(bytes, { dense = false, copy = false } = {}) {
    const data = bytesOf(bytes, "the .dzip");
    const h = await heap();
    const x = h.x;
    const { f } = open(h, data);
    const lenAt = h.alloc(4);
    const headerAt = x.dzw_header_text(f, lenAt);
    const header = JSON.parse(h.text(headerAt, new Uint32Array(h.memory.buffer, lenAt, 1)[0]));
    const count = x.dz_tensor_count(f);
    const infoAt = h.alloc(8 * x.dzw_info_len());
    const infos = [];
    for (let i = 0; i < count; i++) {
      x.dzw_tensor_info(f, i, infoAt);
      infos.push(Array.from(new Float64Array(h.memory.buffer, infoAt, x.dzw_info_len())));
    }
    // A shared tensor with a scale per row (version 5) comes as values: no one codebook holds them.
    const kind = (v) => (ENCODINGS[v[I.encoding]] === "alias" ? "alias"
      : ENCODINGS[v[I.encoding]] === "shared" && !dense && !v[I.scaled] ? "codes" : "values");
    const scratchBytes = x.dz_scratch_max(f);
    const scratch = h.alloc(scratchBytes), n = h.alloc(4);
    // Where each output goes: its own region when all of them fit in 2 GiB (the arrays are then
    // views of the instance's memory: nothing is copied), else one region of each kind reused
    // tensor after tensor, each result copied out (memory: the file and the largest tensor).
    const room = (v) => ({ alias: 0, codes: 10 * v[I.kept] + 4 * v[I.book] + 24, values: v[I.dense] + 8 })[kind(v)];
    const own = !copy && h.top + infos.reduce((sum, v) => sum + room(v), 0) < 2 ** 31;
    const regions = (kept, book, bytes) => ({ pos: h.alloc(8 * kept), codes: h.alloc(2 * kept), book: h.alloc(4 * book),
      out: h.alloc(bytes) });
    const its = (v) => (kind(v) === "codes" ? [v[I.kept], v[I.book], 0] : [0, 0, v[I.dense]]);
    const reused = own ? null : regions(...[0, 1, 2].map((k) => Math.max(0, ...infos.filter((v) => kind(v) !== "alias")
      .map((v) => its(v)[k]))));
    const at = infos.map((v) => (kind(v) === "alias" ? null : own ? regions(...its(v)) : reused));
    // Nothing is allocated from here on: a memory.grow would detach the views made below.
    const view = (Type, ptr, length) => {
      const a = new Type(h.memory.buffer, ptr, length);
      return own ? a : a.slice();
    };
    const tensors = [];
    let denseBytes = 0;
    for (let i = 0; i < count; i++) {
      const v = infos[i], r = at[i];
      const fields = {
        name: h.text(v[I.name], v[I.nameLen]), dtype: DTYPES[v[I.dtype]], encoding: ENCODINGS[v[I.encoding]],
        layout: POSITIONS[v[I.positions]], shape: v.slice(I.shape, I.shape + v[I.ndim]), numel: v[I.numel],
      };
      denseBytes += fields.numel * ITEMSIZE[fields.dtype];
      if (kind(v) === "alias") {
        const src = tensors[v[I.target]];
        tensors.push(new Tensor({ ...src, ...fields, alias: h.text(v[I.alias], v[I.aliasLen]) }));
        continue;
      }
      if (kind(v) === "codes") {
        if (fields.numel > 2 ** 32) {
          throw new Error(`tensor '${fields.name}' has ${fields.numel} elements, more than 32-bit positions address.`);
        }
        check(h, f, x.dzw_decode_shared(f, i, r.pos, r.codes, v[I.kept], n, scratch, scratchBytes));
        check(h, f, x.dz_codebook(f, i, r.book, v[I.book]));
        const kept = new Uint32Array(h.memory.buffer, n, 1)[0];
        fields.positions = view(Uint32Array, r.pos, kept);
        fields.codes = view(Uint16Array, r.codes, kept);
        fields.codebook = view(Float32Array, r.book, v[I.book]);
      } else {
        check(h, f, x.dz_decode_dense(f, i, r.out, v[I.dense], scratch, scratchBytes));
        const Type = typed(fields.dtype);
        fields.values = view(Type, r.out, v[I.dense] / Type.BYTES_PER_ELEMENT);
      }
      tensors.push(new Tensor(fields));
    }
    return new DzipFile({ version: x.dz_version(f), header, tensors, fileBytes: data.byteLength, denseBytes });
  },

  /** A network exported by `deepzip export --web`: its op list run by dzrt, the weights packed
   * from the file's codes once here (a compressed layer never becomes a dense matrix).
   *
   * Args: bytes: the .dzip; ops: the export's model.dzrt (the op list planned for that file).
   * Returns: a DzipModel: predict(Float32Array) → Float32Array, inputSize, outputSize,
   *   arenaBytes (its memory: packed weights + activations), initPeak.
   * Example: `const m = await Dzip.model(dzipBytes, dzrtBytes); m.predict(x)` */
  async model(bytes, ops) {
    const data = bytesOf(bytes, "the .dzip"), list = bytesOf(ops, "the op list");
    if (list.byteLength < 32 || String.fromCharCode(...list.subarray(0, 4)) !== "DZRT") {
      throw new Error("The op list is not one written by deepzip export --web.");
    }
    const arenaBytes = new DataView(list.buffer, list.byteOffset).getUint32(20, true);
    const h = await heap();
    const x = h.x;
    const file = h.copyIn(data), opsAt = h.copyIn(list);
    const w = h.alloc(x.dzw_model_bytes());
    const arena = h.alloc(arenaBytes);
    if (x.dzw_model_init(w, file, data.byteLength, opsAt, list.byteLength, arena, arenaBytes) !== 0) {
      throw new Error(h.cstring(x.dzw_model_message(w)));
    }
    return new DzipModel(h, w, { inputSize: x.dzw_model_numel(w, 0), outputSize: x.dzw_model_numel(w, 1), arenaBytes,
      initPeak: x.dzw_model_init_peak(w) });
  },
};

export default Dzip;
