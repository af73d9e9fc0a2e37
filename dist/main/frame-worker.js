/******/ (() => { // webpackBootstrap
/******/ 	"use strict";
/******/ 	var __webpack_modules__ = ({

/***/ 598:
/***/ ((module) => {

module.exports = require("node:crypto");

/***/ }),

/***/ 24:
/***/ ((module) => {

module.exports = require("node:fs");

/***/ }),

/***/ 919:
/***/ ((module) => {

module.exports = require("node:worker_threads");

/***/ }),

/***/ 522:
/***/ ((module) => {

module.exports = require("node:zlib");

/***/ })

/******/ 	});
/************************************************************************/
/******/ 	// The module cache
/******/ 	var __webpack_module_cache__ = {};
/******/ 	
/******/ 	// The require function
/******/ 	function __nccwpck_require__(moduleId) {
/******/ 		// Check if module is in cache
/******/ 		var cachedModule = __webpack_module_cache__[moduleId];
/******/ 		if (cachedModule !== undefined) {
/******/ 			return cachedModule.exports;
/******/ 		}
/******/ 		// Create a new module (and put it into the cache)
/******/ 		var module = __webpack_module_cache__[moduleId] = {
/******/ 			// no module.id needed
/******/ 			// no module.loaded needed
/******/ 			exports: {}
/******/ 		};
/******/ 	
/******/ 		// Execute the module function
/******/ 		var threw = true;
/******/ 		try {
/******/ 			__webpack_modules__[moduleId](module, module.exports, __nccwpck_require__);
/******/ 			threw = false;
/******/ 		} finally {
/******/ 			if(threw) delete __webpack_module_cache__[moduleId];
/******/ 		}
/******/ 	
/******/ 		// Return the exports of the module
/******/ 		return module.exports;
/******/ 	}
/******/ 	
/************************************************************************/
/******/ 	/* webpack/runtime/asset-relocator-loader */
/******/ 	if (typeof __nccwpck_require__ !== 'undefined') __nccwpck_require__.ab = __dirname + "/";
/******/ 	
/************************************************************************/
var __webpack_exports__ = {};
// This entry need to be wrapped in an IIFE because it uses a non-standard name for the exports (exports).
(() => {
var exports = __webpack_exports__;

Object.defineProperty(exports, "__esModule", ({ value: true }));
const { createHash } = __nccwpck_require__(598);
const { readSync, writeSync } = __nccwpck_require__(24);
const { parentPort } = __nccwpck_require__(919);
const zstd = __nccwpck_require__(522);
/**
 * A chunk goes into the image in writes of at most this much. The page cache takes a folio the size of
 * the write, and on a VM that hands free memory back to its host (free page reporting) large ones come
 * from the blocks handed back, each first touch a fault on the host: ten times slower to fill than
 * small ones. Elsewhere eight calls instead of one cost nothing measurable.
 */
const WRITE_SLICE_BYTES = 128 * 1024;
if (!parentPort)
    throw new Error('frame-worker runs in a worker thread (workers.ts starts it)');
const port = parentPort;
// Undefined: not made yet (or dropped after a failure); null: this Node's stream has no fast path.
let decoder;
let output = Buffer.alloc(0);
let encoder;
let packed = Buffer.alloc(0);
let chunk = Buffer.alloc(0);
let zeroes = Buffer.alloc(0);
let known = new Set();
function reply(message, transfer = []) {
    port.postMessage(message, transfer);
}
function messageOf(error) {
    return error instanceof Error ? error.message : String(error);
}
function isTooLarge(error) {
    return error instanceof Error && error.code === 'ERR_BUFFER_TOO_LARGE';
}
function tooLarge(maxBytes) {
    return Object.assign(new Error(`a frame decompresses to more than ${maxBytes} bytes`), {
        code: 'ERR_BUFFER_TOO_LARGE'
    });
}
function fastPath(stream) {
    const handle = stream?._handle;
    const state = stream?._writeState;
    if (!stream || !handle || typeof handle.writeSync !== 'function' || !(state instanceof Uint32Array))
        return undefined;
    return { stream, handle: handle, state };
}
function decompress(frame, maxBytes, chunkSize) {
    if (decoder === undefined) {
        decoder = zstd.createZstdDecompress();
        // Its failure is read from 'errored' right away; the event that follows is no news.
        decoder.on('error', () => undefined);
    }
    else if (decoder !== null)
        decoder.reset();
    const fast = fastPath(decoder);
    if (!fast) {
        decoder = null;
        return zstd.zstdDecompressSync(frame, { maxOutputLength: maxBytes, chunkSize });
    }
    // One byte more than allowed: a frame that fills it is too large.
    if (output.length !== maxBytes + 1)
        output = Buffer.allocUnsafe(maxBytes + 1);
    fast.handle.writeSync(zstd.constants.ZSTD_e_end, frame, 0, frame.length, output, 0, output.length);
    const failed = fast.stream.errored;
    const produced = output.length - fast.state[0];
    const left = fast.state[1];
    if (failed) {
        decoder = undefined;
        throw failed;
    }
    if (produced > maxBytes)
        throw tooLarge(maxBytes);
    if (left > 0)
        throw new Error(`${left} bytes follow the frame`);
    return output.subarray(0, produced);
}
function compress(data, level, maxBytes) {
    if (typeof zstd.zstdCompressSync !== 'function')
        return undefined;
    const params = { [zstd.constants.ZSTD_c_compressionLevel]: level };
    if (encoder === undefined) {
        encoder = zstd.createZstdCompress({ params });
        encoder.on('error', () => undefined);
    }
    else if (encoder !== null)
        encoder.reset();
    const fast = fastPath(encoder);
    if (!fast) {
        encoder = null;
        return zstd.zstdCompressSync(data, { params, maxOutputLength: maxBytes });
    }
    if (packed.length !== maxBytes)
        packed = Buffer.allocUnsafe(maxBytes);
    fast.handle.writeSync(zstd.constants.ZSTD_e_end, data, 0, data.length, packed, 0, packed.length);
    const failed = fast.stream.errored;
    if (failed) {
        encoder = undefined;
        throw failed;
    }
    // Input left, or the output full: the frame did not fit.
    if (fast.state[1] > 0 || fast.state[0] === 0) {
        encoder = undefined;
        throw new Error(`a chunk compresses to more than ${maxBytes} bytes`);
    }
    return packed.subarray(0, packed.length - fast.state[0]);
}
function pack({ id, request, known: next }) {
    if (next)
        known = new Set(next);
    const { fd, offset, bytes, keep, level, maxFrameBytes } = request;
    if (chunk.length !== bytes) {
        chunk = Buffer.allocUnsafe(bytes);
        zeroes = Buffer.alloc(bytes);
    }
    let read = 0;
    for (let got = -1; got !== 0 && read < bytes; read += got)
        got = readSync(fd, chunk, read, bytes - read, offset + read);
    let from = 0;
    for (const [start, end] of keep) {
        chunk.fill(0, from, start);
        from = end;
    }
    chunk.fill(0, Math.min(from, read));
    if (chunk.equals(zeroes)) {
        reply({ id });
        return;
    }
    const hash = createHash('sha256').update(chunk).digest('hex');
    if (known.has(hash)) {
        reply({ id, hash });
        return;
    }
    const frame = compress(chunk, level, maxFrameBytes);
    // Its own copy, moved to the main thread: the worker's buffers serve the next chunk.
    const own = new Uint8Array(frame ?? chunk);
    reply(frame ? { id, hash, frame: own } : { id, hash, data: own }, [own.buffer]);
}
function write({ id, frame, maxBytes, chunkSize, target }) {
    let data;
    try {
        data = decompress(frame, maxBytes, chunkSize);
    }
    catch (error) {
        const large = isTooLarge(error);
        reply({ id, error: messageOf(error), tooLarge: large, undecodable: !large });
        return;
    }
    if (data.length !== target.bytes || createHash('sha256').update(data).digest('hex') !== target.hash) {
        reply({ id, mismatch: true });
        return;
    }
    for (const offset of target.offsets)
        for (let done = 0; done < data.length;) {
            const length = Math.min(WRITE_SLICE_BYTES, data.length - done);
            done += writeSync(target.fd, data, done, length, offset + done);
        }
    reply({ id });
}
port.on('message', (message) => {
    try {
        if (message.kind === 'pack')
            pack(message);
        else
            write(message);
    }
    catch (error) {
        reply({ id: message.id, error: messageOf(error), tooLarge: isTooLarge(error) });
    }
});

})();

module.exports = __webpack_exports__;
/******/ })()
;