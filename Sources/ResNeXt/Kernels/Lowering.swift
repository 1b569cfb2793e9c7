// Lowering a convolution to a GEMM: im2col copies the input planes into the rows of a column
// matrix (one row per input channel and kernel offset), col2im adds such a matrix back into the
// planes (its adjoint, for the input gradient). Free functions over the layout of Conv2d.swift's
// legend; `Conv2d` chooses the variant (`Lowering`), `LoweringTests` checks them against each other
// and the layer fixtures against PyTorch.

/// The geometry of one convolution's lowering at planes of h x w, and which variant runs: row by
/// row (`RowLowering`, float32 3x3 with padding 1), on phase planes (stride 2, output a quarter of
/// the input), or the general copy.
struct Lowering {
    let kernel, stride, padding: Int
    /// Input and output plane.
    let h, w, p, q: Int
    /// Whether `RowLowering` lowers these planes.
    let byRows: Bool
    /// Whether every column row is a shifted copy of one of the input's four phase planes.
    let phasePlanes: Bool
    /// Floats from the start of the workspace to the phase planes (or the spare rows of a 1x1
    /// stride-2 layer): after the columns.
    let spare: Int
}

/// The same memory as float32: for the float32-only kernels, called where T is Float.
@inline(__always) func floats<T>(_ p: UnsafePointer<T>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}
@inline(__always) func mutableFloats<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
}

/// col (Cg*R*S, |images|*P*Q): row (c, r, s) holds x[c, i, p*stride - pad + r, q*stride - pad + s]
/// for the images i of the chunk, 0 outside; x is (Cg, N, H, W). col is the start of the
/// workspace (`usesPhasePlanes` keeps its phase planes after the columns).
@_specialize(where T == Float)
@_specialize(where T == Double)
func im2col<T: EngineScalar>(
    _ l: Lowering, x: UnsafePointer<T>, col: UnsafeMutablePointer<T>, c: Int, n: Int, images: Range<Int>,
    normalize: NormalizedInput? = nil
) {
    let (h, w, p, q) = (l.h, l.w, l.p, l.q)
    let k = l.kernel, st = l.stride, pad = l.padding
    if l.byRows {
        if st == 1 {
            RowLowering.im2colSame(x: floats(x), col: mutableFloats(col), c: c, n: n, images: images, h: h, w: w, normalize: normalize)
        } else {
            RowLowering.im2colStride2(x: floats(x), col: mutableFloats(col), c: c, n: n, images: images, h: h, w: w, normalize: normalize)
        }
        return
    }
    precondition(normalize == nil, "a normalized input needs the row lowering")
    if st == 1 && p == h && q == w {
        // same-size convolution: each column row is the input plane shifted by (r - pad, s - pad)
        var dst = col
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    for ni in images {
                        shiftedCopy(from: x + (ci * n + ni) * h * w, to: dst, dy: r - pad, dx: s - pad, h: h, w: w)
                        dst += h * w
                    }
                }
            }
        }
        return
    }
    if l.phasePlanes && k == 1 {
        // a 1x1 stride-2 layer reads one phase, (even, even): split only the even rows, their
        // odd halves into a spare row
        let spare = col + l.spare, quarter = p * q, cols = images.count * quarter
        for ci in 0..<c {
            for ni in images {
                let plane = x + (ci * n + ni) * h * w, dst = col + ci * cols + (ni - images.lowerBound) * quarter
                for i in 0..<p { deinterleave(plane + 2 * i * w, even: dst + i * q, odd: spare, half: q) }
            }
        }
        return
    }
    if l.phasePlanes {
        let phases = col + l.spare, quarter = p * q, cols = images.count * quarter
        for ci in 0..<c {
            for ni in images {
                splitPhases(x + (ci * n + ni) * h * w, into: phases, h: h, w: w)
                let dst = col + (ni - images.lowerBound) * quarter
                for r in 0..<k {
                    let (pr, sr) = phaseOf(r, padding: pad)
                    for s in 0..<k {
                        let (ps, ss) = phaseOf(s, padding: pad)
                        shiftedCopy(
                            from: phases + (2 * pr + ps) * quarter, to: dst + ((ci * k + r) * k + s) * cols,
                            dy: sr, dx: ss, h: p, w: q)
                    }
                }
            }
        }
        return
    }
    var dst = col
    for ci in 0..<c {
        for r in 0..<k {
            for s in 0..<k {
                // valid output columns: 0 <= oq*st - pad + s < w
                let qLo = max(0, (pad - s + st - 1) / st)
                let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                for ni in images {
                    let src = x + (ci * n + ni) * h * w
                    for op in 0..<p {
                        let ih = op * st - pad + r
                        let row = dst + op * q
                        if ih < 0 || ih >= h || qHi <= qLo {
                            row.update(repeating: 0, count: q)
                            continue
                        }
                        let line = src + ih * w - pad + s
                        for oq in 0..<qLo { row[oq] = 0 }
                        if st == 1 {
                            row.advanced(by: qLo).update(from: line + qLo, count: qHi - qLo)
                        } else {
                            for oq in qLo..<qHi { row[oq] = line[oq * st] }
                        }
                        for oq in qHi..<q { row[oq] = 0 }
                    }
                    dst += p * q
                }
            }
        }
    }
}

/// dst[i, j] = src[i + dy, j + dx], 0 where that falls outside the h x w plane.
@inline(__always)
func shiftedCopy<T: EngineScalar>(from src: UnsafePointer<T>, to dst: UnsafeMutablePointer<T>, dy: Int, dx: Int, h: Int, w: Int) {
    let rowLo = max(0, -dy), rowHi = min(h, h - dy)
    if rowLo > 0 { dst.update(repeating: 0, count: rowLo * w) }
    if rowHi < h { (dst + rowHi * w).update(repeating: 0, count: (h - rowHi) * w) }
    guard rowHi > rowLo else { return }
    // one contiguous copy of the valid rows, shifted by dy * w + dx, clipped to the plane
    let offset = dy * w + dx
    let lo = max(rowLo * w, -offset), hi = min(rowHi * w, h * w - offset)
    if hi > lo { (dst + lo).update(from: src + lo + offset, count: hi - lo) }
    if lo > rowLo * w { (dst + rowLo * w).update(repeating: 0, count: lo - rowLo * w) }
    if hi < rowHi * w { (dst + hi).update(repeating: 0, count: rowHi * w - hi) }
    // the columns that wrapped around from the neighbouring row read padding
    if dx < 0 { for i in rowLo..<rowHi { for j in 0..<(-dx) { dst[i * w + j] = 0 } } }
    if dx > 0 { for i in rowLo..<rowHi { for j in (w - dx)..<w { dst[i * w + j] = 0 } } }
}

/// The adjoint of shiftedCopy: dst[i + dy, j + dx] += src[i, j] inside the plane. Clears the
/// entries of src that map outside (src is scratch).
@inline(__always)
func shiftedAdd<T: EngineScalar>(from src: UnsafeMutablePointer<T>, to dst: UnsafeMutablePointer<T>, dy: Int, dx: Int, h: Int, w: Int) {
    let rowLo = max(0, -dy), rowHi = min(h, h - dy)
    guard rowHi > rowLo else { return }
    if dx < 0 { for i in rowLo..<rowHi { for j in 0..<(-dx) { src[i * w + j] = 0 } } }
    if dx > 0 { for i in rowLo..<rowHi { for j in (w - dx)..<w { src[i * w + j] = 0 } } }
    let offset = dy * w + dx
    let lo = max(rowLo * w, -offset), hi = min(rowHi * w, h * w - offset)
    if hi > lo {
        let d = dst + offset
        for i in lo..<hi { d[i] += src[i] }
    }
}

/// Kernel row (or column) r of a stride-2 convolution reads input row 2o - pad + r, which is
/// row o + shift of the phase planes of that parity.
@inline(__always) func phaseOf(_ r: Int, padding: Int) -> (parity: Int, shift: Int) {
    let t = r - padding
    return (t & 1, t >> 1)
}

/// phases = the four (h/2, w/2) planes of an h x w plane: phase 2a + b holds plane[2i + a, 2j + b].
@inline(__always) func splitPhases<T: EngineScalar>(_ plane: UnsafePointer<T>, into phases: UnsafeMutablePointer<T>, h: Int, w: Int) {
    let half = w / 2, quarter = h / 2 * half
    for i in 0..<h {
        let even = phases + (i & 1) * 2 * quarter + (i >> 1) * half
        deinterleave(plane + i * w, even: even, odd: even + quarter, half: half)
    }
}

/// plane += the plane whose phases these are (the adjoint of `splitPhases`), or plane = it
/// with `overwrite`.
@inline(__always) func mergePhases<T: EngineScalar>(
    _ phases: UnsafePointer<T>, into plane: UnsafeMutablePointer<T>, h: Int, w: Int,
    overwrite: Bool
) {
    let half = w / 2, quarter = h / 2 * half
    for i in 0..<h {
        let even = phases + (i & 1) * 2 * quarter + (i >> 1) * half
        interleave(even: even, odd: even + quarter, into: plane + i * w, half: half, add: !overwrite)
    }
}

/// even[j] = line[2j], odd[j] = line[2j+1] for j < half. In float32 with half a multiple of 8,
/// 16 values at a time with wide stores: element-wise stores here stalled the wide reads of
/// even/odd that follow (store forwarding), which made this path 6x slower than the same
/// loop in C.
@inline(__always)
func deinterleave<T: EngineScalar>(_ line: UnsafePointer<T>, even: UnsafeMutablePointer<T>, odd: UnsafeMutablePointer<T>, half: Int) {
    if T.self == Float.self && half % 8 == 0 {
        let l = UnsafeRawPointer(line), e = UnsafeMutableRawPointer(even), o = UnsafeMutableRawPointer(odd)
        var j = 0
        while j < half {
            let v = l.loadUnaligned(fromByteOffset: j &* 8, as: SIMD16<Float>.self)
            e.storeBytes(of: v.evenHalf, toByteOffset: j &* 4, as: SIMD8<Float>.self)
            o.storeBytes(of: v.oddHalf, toByteOffset: j &* 4, as: SIMD8<Float>.self)
            j &+= 8
        }
        return
    }
    for j in 0..<half {
        even[j] = line[2 * j]
        odd[j] = line[2 * j + 1]
    }
}

/// line[2j] += even[j], line[2j+1] += odd[j] for j < half (the adjoint of `deinterleave`),
/// or = without `add`.
@inline(__always)
func interleave<T: EngineScalar>(even: UnsafePointer<T>, odd: UnsafePointer<T>, into line: UnsafeMutablePointer<T>, half: Int, add: Bool) {
    if T.self == Float.self && half % 8 == 0 {
        let l = UnsafeMutableRawPointer(line), e = UnsafeRawPointer(even), o = UnsafeRawPointer(odd)
        var j = 0
        while j < half {
            var v = SIMD16<Float>()
            v.evenHalf = e.loadUnaligned(fromByteOffset: j &* 4, as: SIMD8<Float>.self)
            v.oddHalf = o.loadUnaligned(fromByteOffset: j &* 4, as: SIMD8<Float>.self)
            if add { v += l.loadUnaligned(fromByteOffset: j &* 8, as: SIMD16<Float>.self) }
            l.storeBytes(of: v, toByteOffset: j &* 8, as: SIMD16<Float>.self)
            j &+= 8
        }
        return
    }
    for j in 0..<half {
        line[2 * j] = add ? line[2 * j] + even[j] : even[j]
        line[2 * j + 1] = add ? line[2 * j + 1] + odd[j] : odd[j]
    }
}

/// The adjoint of im2col: dx[c, i, ih, iw] += col[(c, r, s), (i, p, q)] for the chunk's images.
/// With `overwrite` (only where `usesPhasePlanes`), the chunk's planes of dx are written instead.
@_specialize(where T == Float)
@_specialize(where T == Double)
func col2im<T: EngineScalar>(
    _ l: Lowering, col: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, c: Int, n: Int, images: Range<Int>,
    overwrite: Bool = false
) {
    precondition(!overwrite || l.phasePlanes, "col2im writes dx only on phase planes")
    let (h, w, p, q) = (l.h, l.w, l.p, l.q)
    let k = l.kernel, st = l.stride, pad = l.padding
    if st == 2 && l.byRows {
        RowLowering.col2imStride2(col: floats(col), dx: mutableFloats(dx), c: c, n: n, images: images, h: h, w: w, overwrite: overwrite)
        return
    }
    if st == 1 && p == h && q == w {
        var src = UnsafeMutablePointer(mutating: col)
        for ci in 0..<c {
            for r in 0..<k {
                for s in 0..<k {
                    for ni in images {
                        shiftedAdd(from: src, to: dx + (ci * n + ni) * h * w, dy: r - pad, dx: s - pad, h: h, w: w)
                        src += h * w
                    }
                }
            }
        }
        return
    }
    if l.phasePlanes && k == 1 {
        // only phase (even, even) is non-zero: even rows interleave it with zeros, odd rows are
        // zeros; the same sums as merging four phase planes (the phase is 0 + col, as there)
        let spare = UnsafeMutablePointer(mutating: col) + l.spare
        let row = spare, zeros = spare + q, quarter = p * q, cols = images.count * quarter
        zeros.update(repeating: 0, count: q)
        for ci in 0..<c {
            for ni in images {
                let src = col + ci * cols + (ni - images.lowerBound) * quarter, plane = dx + (ci * n + ni) * h * w
                for i in 0..<p {
                    for j in 0..<q { row[j] = 0 + src[i * q + j] }
                    interleave(even: row, odd: zeros, into: plane + 2 * i * w, half: q, add: !overwrite)
                    interleave(even: zeros, odd: zeros, into: plane + (2 * i + 1) * w, half: q, add: !overwrite)
                }
            }
        }
        return
    }
    if l.phasePlanes {
        let phases = UnsafeMutablePointer(mutating: col) + l.spare
        let quarter = p * q, cols = images.count * quarter
        for ci in 0..<c {
            for ni in images {
                phases.update(repeating: 0, count: h * w)
                let src = UnsafeMutablePointer(mutating: col) + (ni - images.lowerBound) * quarter
                for r in 0..<k {
                    let (pr, sr) = phaseOf(r, padding: pad)
                    for s in 0..<k {
                        let (ps, ss) = phaseOf(s, padding: pad)
                        shiftedAdd(
                            from: src + ((ci * k + r) * k + s) * cols, to: phases + (2 * pr + ps) * quarter,
                            dy: sr, dx: ss, h: p, w: q)
                    }
                }
                mergePhases(phases, into: dx + (ci * n + ni) * h * w, h: h, w: w, overwrite: overwrite)
            }
        }
        return
    }
    var src = col
    for ci in 0..<c {
        for r in 0..<k {
            for s in 0..<k {
                let qLo = max(0, (pad - s + st - 1) / st)
                let qHi = min(q, floorDiv(w - 1 + pad - s, st) + 1)
                for ni in images {
                    let dst = dx + (ci * n + ni) * h * w
                    if qHi > qLo {
                        for op in 0..<p {
                            let ih = op * st - pad + r
                            if ih < 0 || ih >= h { continue }
                            let line = dst + ih * w - pad + s
                            let row = src + op * q
                            if st == 1 {
                                for oq in qLo..<qHi { line[oq] += row[oq] }
                            } else {
                                for oq in qLo..<qHi { line[oq * st] += row[oq] }
                            }
                        }
                    }
                    src += p * q
                }
            }
        }
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
