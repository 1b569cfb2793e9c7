// Layout legend: see Conv2d.swift. x is (C, N, H, W); a column matrix is (Cg*R*S, images*P*Q).

/// im2col and col2im a row at a time, in float32, for the two 3x3 lowerings ResNeXt runs on
/// small planes: stride 1 "same" (the weight gradient of layers off `Direct3x3`, the stem) and
/// stride 2 with padding 1 on even planes (the first block of stages 2 and 3).
///
/// `Conv2d`'s plane-at-a-time lowering makes nine shifted copies of each (channel, image) plane
/// (for stride 2, of its four phase planes), each a call into memmove and memset with edge fixes.
/// On an 8 x 8 plane that is a few hundred cycles for 64 floats: bench --layers put the lowering
/// of 29-4x64d's stage-3 stride-2 layer at 75-92 ms per step for 19M floats per pass. Here each
/// input row is read once per kernel row and written straight into the three columns it feeds,
/// 8 floats at a time.
///
/// The im2cols can read a batch norm's output from its input (`NormalizedInput`).
///
/// Same values as `Conv2d`'s path, bit for bit: im2col only copies; col2im adds the same terms in
/// the same order (each phase sum from +0 in kernel order, then into dx), and where that path
/// has no term this one adds +0, which leaves a sum started from +0 unchanged.
enum RowLowering {
    // `Conv2d.usesRowLowering` says where these apply: rows (stride 1) or output rows (stride 2)
    // a whole number of 8-float blocks.

    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { Direct3x3.load(p) }
    @inline(__always) static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        Direct3x3.store(v, p, accumulate: false)
    }
    @inline(__always) static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    @inline(__always) static func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }
    /// (0, v0, ..., v6) and (v1, ..., v7, 0): a row's first and last block shifted by one column.
    @inline(__always) static func shiftedIn(_ v: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(0, v[0], v[1], v[2], v[3], v[4], v[5], v[6])
    }
    @inline(__always) static func shiftedOut(_ v: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(v[1], v[2], v[3], v[4], v[5], v[6], v[7], 0)
    }
    @inline(__always) static func zero(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        var j = 0
        while j < count { store8(SIMD8(), p + j); j &+= 8 }
    }

    /// Stride 1, padding 1: column row (c, r, s), image i, pixel (a, b) = x[c, i, a + r - 1, b + s - 1].
    static func im2colSame(
        x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, c: Int, n: Int,
        images: Range<Int>, h: Int, w: Int, normalize: NormalizedInput? = nil
    ) {
        let plane = h * w, cols = images.count * plane
        for ci in 0..<c {
            for ni in images {
                let src = x + (ci * n + ni) * plane
                let dst = col + ci * 9 * cols + (ni - images.lowerBound) * plane
                if let f = normalize?.factors(ci, ni) {
                    sameRows(src, dst, cols: cols, h: h, w: w) { NormalizedInput.apply(load8($0), f) }
                } else {
                    sameRows(src, dst, cols: cols, h: h, w: w) { load8($0) }
                }
            }
        }
    }

    /// One plane's rows of `im2colSame`, each 8 floats read through `load`.
    @inline(__always)
    static func sameRows(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, cols: Int, h: Int, w: Int,
        load: (UnsafePointer<Float>) -> SIMD8<Float>
    ) {
        for a in 0..<h {
            for r in 0..<3 {
                let d0 = dst + r * 3 * cols + a * w, d1 = d0 + cols, d2 = d1 + cols
                let ih = a + r - 1
                if ih < 0 || ih >= h {
                    zero(d0, w); zero(d1, w); zero(d2, w)
                    continue
                }
                let line = src + ih * w
                store8(shiftedIn(load(line)), d0)
                var j = 8
                while j < w { store8(load(line + j - 1), d0 + j); j &+= 8 }
                j = 0
                while j < w { store8(load(line + j), d1 + j); j &+= 8 }
                j = 0
                while j < w - 8 { store8(load(line + j + 1), d2 + j); j &+= 8 }
                store8(shiftedOut(load(line + w - 8)), d2 + w - 8)
            }
        }
    }

    /// Stride 2, padding 1, p = h/2, q = w/2: column row (c, r, s), image i, pixel (a, b) =
    /// x[c, i, 2a + r - 1, 2b + s - 1]. Kernel column 1 reads the even columns of an input row,
    /// column 2 the odd ones, and column 0 the odd ones shifted by one.
    static func im2colStride2(
        x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, c: Int, n: Int,
        images: Range<Int>, h: Int, w: Int, normalize: NormalizedInput? = nil
    ) {
        let p = h / 2, q = w / 2, quarter = p * q, cols = images.count * quarter
        for ci in 0..<c {
            for ni in images {
                let src = x + (ci * n + ni) * h * w
                let dst = col + ci * 9 * cols + (ni - images.lowerBound) * quarter
                if let f = normalize?.factors(ci, ni) {
                    stride2Rows(src, dst, cols: cols, p: p, q: q, w: w) { NormalizedInput.apply(load16($0), f) }
                } else {
                    stride2Rows(src, dst, cols: cols, p: p, q: q, w: w) { load16($0) }
                }
            }
        }
    }

    /// One plane's output rows of `im2colStride2`, each 16 floats read through `load`.
    @inline(__always)
    static func stride2Rows(
        _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, cols: Int, p: Int, q: Int, w: Int,
        load: (UnsafePointer<Float>) -> SIMD16<Float>
    ) {
        for a in 0..<p {
            for r in 0..<3 {
                let d0 = dst + r * 3 * cols + a * q, d1 = d0 + cols, d2 = d1 + cols
                let ih = 2 * a + r - 1
                if ih < 0 {
                    zero(d0, q); zero(d1, q); zero(d2, q)
                    continue
                }
                let line = src + ih * w
                var j = 0
                while j < q {
                    let v = load(line + 2 * j)
                    store8(v.evenHalf, d1 + j)
                    store8(v.oddHalf, d2 + j)
                    store8(j == 0 ? shiftedIn(v.oddHalf) : load(line + 2 * j - 2).oddHalf, d0 + j)
                    j &+= 8
                }
            }
        }
    }

    /// The adjoint of `im2colStride2`: dx[c, i] (+)= the sum of the columns that read each pixel.
    /// Even input rows 2a are read by kernel row 1 of output row a; odd rows 2a + 1 by kernel row 0
    /// of output row a + 1, then kernel row 2 of row a. Within a row, even columns 2b by kernel
    /// column 1 at b; odd columns 2b + 1 by column 0 at b + 1, then column 2 at b. Each sum starts
    /// from +0 and takes its terms in kernel order (r, s), as `Conv2d`'s phase planes do, then
    /// is added to dx, or written with `overwrite`.
    static func col2imStride2(
        col: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, c: Int, n: Int,
        images: Range<Int>, h: Int, w: Int, overwrite: Bool
    ) {
        let p = h / 2, q = w / 2, quarter = p * q, cols = images.count * quarter
        let notLast = SIMD8<Int32>(0, 0, 0, 0, 0, 0, 0, 1) .== 0
        for ci in 0..<c {
            for ni in images {
                let plane = dx + (ci * n + ni) * h * w
                let src = col + ci * 9 * cols + (ni - images.lowerBound) * quarter
                /// Column row (r, s) at output row a, from column j (+ 1 with `next`, 0 past the row).
                @inline(__always) func term(_ r: Int, _ s: Int, _ a: Int, _ j: Int, next: Bool = false) -> SIMD8<Float> {
                    guard a < p else { return SIMD8() }
                    let row = src + (r * 3 + s) * cols + a * q + j
                    guard next else { return load8(row) }
                    let v = load8(row + 1)
                    return j + 8 < q ? v : v.replacing(with: 0, where: .!notLast)
                }
                for a in 0..<p {
                    var j = 0
                    while j < q {
                        // even row 2a: kernel row 1 only
                        var even = SIMD8<Float>(), odd = SIMD8<Float>()
                        even += term(1, 1, a, j)
                        odd += term(1, 0, a, j, next: true)
                        odd += term(1, 2, a, j)
                        var v = SIMD16<Float>()
                        v.evenHalf = even
                        v.oddHalf = odd
                        let line = plane + 2 * a * w + 2 * j
                        store16(overwrite ? v : v + load16(line), line)
                        // odd row 2a + 1: kernel row 0 of output row a + 1, then row 2 of row a
                        even = SIMD8(); odd = SIMD8()
                        even += term(0, 1, a + 1, j)
                        even += term(2, 1, a, j)
                        odd += term(0, 0, a + 1, j, next: true)
                        odd += term(0, 2, a + 1, j)
                        odd += term(2, 0, a, j, next: true)
                        odd += term(2, 2, a, j)
                        v.evenHalf = even
                        v.oddHalf = odd
                        let line2 = line + w
                        store16(overwrite ? v : v + load16(line2), line2)
                        j &+= 8
                    }
                }
            }
        }
    }
}
