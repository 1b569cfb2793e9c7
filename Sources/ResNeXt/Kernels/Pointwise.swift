/// The float32 product of a 1x1 convolution over channel-major tensors, without OpenBLAS:
/// y (m, p) = A (m, k) * x (k, p), or y += it, where p is every pixel of the batch (N*H*W), m the
/// output and k the input channels. `Conv2d` uses it for a 1x1 stride-1 convolution's forward
/// (A = W) and input gradient (A = W^T), and for the column gradient of a lowered (im2col)
/// convolution that col2im scatters (A = W^T, Cg*R*S rows, Kg deep: the stride-2 layers). The
/// weight gradients, products p deep, stay with OpenBLAS, and so does a lowered forward (Cg*R*S
/// deep, where the two tie).
///
/// Why not OpenBLAS: these products are thin (k = 16-256 deep, m = 16-256 rows), and OpenBLAS
/// runs them at 20-50 GFLOP/s where a square one gets 65-75 (docs/performance.md). Its loop
/// order leaves the output to be written in 16-column pieces on m rows a whole plane apart, with
/// a separate pass that zeroes it first. Here, for each block of columns:
/// - the block of x (k rows of `blockColumns(k)` floats, each read as one sequential run) is
///   packed into strips of 24 columns (and 0-2 strips of 16 at the end, `stripCounts`), each
///   strip's k x 24 floats contiguous, so that the kernel's reads are sequential and no two rows
///   alias in L1 (rows of x are a multiple of 4 KiB apart);
/// - then for each 4 output rows, all the block's strips: 12 SIMD accumulators (4 rows x 24
///   columns), each input channel one broadcast weight per row and three loads of x for 12 FMAs
///   (8 accumulators and two loads for a 16-column strip), and the 4 output rows are written as 4
///   sequential runs of the block's width.
/// Measured against `cblas_sgemm` with a standalone prototype of the same loops with 16-column
/// strips only (one thread, docs/performance.md):
/// 64 x 65536 x 64 0.78-0.85 of its time, 64 x 65536 x 16 0.45-0.55, 128 x 65536 x 64 0.73-0.78,
/// and within the noise of it on the 16-row and 256-deep products; the stride-2 column gradients
/// 288 x 8192 x 32 0.58, 576 x 4096 x 64 0.74-0.79. The 24-column strips then took 0.86-0.94 of
/// the 16-column strips' time on every product of 29-4x16d (x and y in memory, interleaved).
///
/// Each output is one FMA chain over the k input channels in order, from zero; OpenBLAS's
/// result differs in the last bits on some tiles (it splits some chains), so the two agree to
/// float32 rounding, not bitwise (`PointwiseTests`).
public enum Pointwise {
    /// Rows of A per register block, and columns per strip.
    static let rowBlock = 4, strip = 16

    /// Whether `Conv2d` takes this kernel for y (m, p) = A (m, k) x: whole register blocks and
    /// strips, and A within 1 MiB. Every block of columns reads all of A, so a larger A comes
    /// from beyond L2 each time: 1024 x 4096 x 1024 (29-4x64d, stage 3) ran 1.12x OpenBLAS's
    /// time, 512 x 16384 x 512 tied (prototype, one run).
    public static func applies(m: Int, k: Int, p: Int) -> Bool { fits(m: m, p: p) && m * k <= 1 << 18 }

    /// Whole register blocks and strips: what `run` requires.
    static func fits(m: Int, p: Int) -> Bool { m % rowBlock == 0 && p % strip == 0 && m > 0 && p > 0 }

    /// Columns per packed block: about 256 KiB of packed x (an L2's share), 128-1024 columns.
    static func blockColumns(k: Int) -> Int { max(128, min(1024, 65536 / max(k, 1))) / strip * strip }

    /// Floats of scratch `run` needs: the packed A and one packed block of x.
    public static func scratchCount(m: Int, k: Int) -> Int { m * k + k * blockColumns(k: k) }

    /// y (m, p) = A (m, k) * x (k, p), or y += it when `accumulate`. A's element (i, c) is at
    /// a[i * aRow + c * aColumn] (A = W: aRow = k, aColumn = 1; A = W^T for W (k, m): aRow = 1,
    /// aColumn = m). x's rows are `ldx` apart, y's `ldy` (p for whole tensors; more for a chunk of
    /// a wider one). m must be a multiple of 4 and p of 16.
    public static func run(
        a: UnsafePointer<Float>, aRow: Int, aColumn: Int, x: UnsafePointer<Float>, ldx: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int, m: Int, k: Int, p: Int, accumulate: Bool,
        scratch: UnsafeMutablePointer<Float>
    ) {
        precondition(fits(m: m, p: p))
        // A as [m / 4][k][4]: a register block's 4 weights of one input channel side by side
        let packedA = scratch, packedX = scratch + m * k
        for i0 in Swift.stride(from: 0, to: m, by: rowBlock) {
            for c in 0..<k {
                for i in 0..<rowBlock { packedA[(i0 * k) + c * rowBlock + i] = a[(i0 + i) * aRow + c * aColumn] }
            }
        }
        let width = blockColumns(k: k)
        var p0 = 0
        while p0 < p {
            let columns = min(width, p - p0)
            let (wide, narrow) = stripCounts(columns: columns)
            let narrowX = packedX + wide &* k &* wideStrip
            // x[:, p0 ..< p0 + columns] as [wide strip][k][24], then [narrow strip][k][16]
            for c in 0..<k {
                let src = x + (c &* ldx &+ p0)
                for s in 0..<wide {
                    let from = src + s &* wideStrip, d = packedX + (s &* k &+ c) &* wideStrip
                    Direct3x3.store(load(from), d, accumulate: false)
                    Direct3x3.store(load(from + 8), d + 8, accumulate: false)
                    Direct3x3.store(load(from + 16), d + 16, accumulate: false)
                }
                let rest = src + wide &* wideStrip
                for s in 0..<narrow {
                    let d = narrowX + (s &* k &+ c) &* strip
                    Direct3x3.store(load(rest + s &* strip), d, accumulate: false)
                    Direct3x3.store(load(rest + (s &* strip &+ 8)), d + 8, accumulate: false)
                }
            }
            for i0 in Swift.stride(from: 0, to: m, by: rowBlock) {
                let out = y + (i0 &* ldy &+ p0)
                for s in 0..<wide {
                    block4x24(
                        packedA: packedA + i0 &* k, packedX: packedX + s &* k &* wideStrip, k: k,
                        out: out + s &* wideStrip, rowStride: ldy, accumulate: accumulate)
                }
                let rest = out + wide &* wideStrip
                for s in 0..<narrow {
                    block4x16(
                        packedA: packedA + i0 &* k, packedX: narrowX + s &* k &* strip, k: k,
                        out: rest + s &* strip, rowStride: ldy, accumulate: accumulate)
                }
            }
            p0 &+= columns
        }
    }

    /// Columns of a wide strip.
    static let wideStrip = 24

    /// A block of `columns` (a multiple of 16) as wide strips of 24 and then 0-2 strips of 16.
    public static func stripCounts(columns: Int) -> (wide: Int, narrow: Int) {
        let narrow = (columns / strip) % 3
        return ((columns - narrow * strip) / wideStrip, narrow)
    }

    /// out[i, 0..<24] (+)= sum over c of packedA[c][i] * packedX[c][0..<24], for i in 0..<4: 12
    /// accumulators, each input channel 3 loads of x and 4 broadcast weights for 12 FMAs. Each
    /// output is the same FMA chain as in `block4x16`.
    @inline(__always)
    static func block4x24(
        packedA: UnsafePointer<Float>, packedX: UnsafePointer<Float>, k: Int,
        out: UnsafeMutablePointer<Float>, rowStride: Int, accumulate: Bool
    ) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>()
        var b0 = SIMD8<Float>(), b1 = SIMD8<Float>(), b2 = SIMD8<Float>()
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>()
        var d0 = SIMD8<Float>(), d1 = SIMD8<Float>(), d2 = SIMD8<Float>()
        var w = packedA, xp = packedX
        for _ in 0..<k {
            let x0 = load(xp), x1 = load(xp + 8), x2 = load(xp + 16)
            var v = SIMD8<Float>(repeating: w[0])
            a0 = a0.addingProduct(x0, v); a1 = a1.addingProduct(x1, v); a2 = a2.addingProduct(x2, v)
            v = SIMD8<Float>(repeating: w[1])
            b0 = b0.addingProduct(x0, v); b1 = b1.addingProduct(x1, v); b2 = b2.addingProduct(x2, v)
            v = SIMD8<Float>(repeating: w[2])
            c0 = c0.addingProduct(x0, v); c1 = c1.addingProduct(x1, v); c2 = c2.addingProduct(x2, v)
            v = SIMD8<Float>(repeating: w[3])
            d0 = d0.addingProduct(x0, v); d1 = d1.addingProduct(x1, v); d2 = d2.addingProduct(x2, v)
            xp += wideStrip; w += rowBlock
        }
        let r1 = out + rowStride, r2 = r1 + rowStride, r3 = r2 + rowStride
        Direct3x3.store(a0, out, accumulate: accumulate); Direct3x3.store(a1, out + 8, accumulate: accumulate)
        Direct3x3.store(a2, out + 16, accumulate: accumulate)
        Direct3x3.store(b0, r1, accumulate: accumulate); Direct3x3.store(b1, r1 + 8, accumulate: accumulate)
        Direct3x3.store(b2, r1 + 16, accumulate: accumulate)
        Direct3x3.store(c0, r2, accumulate: accumulate); Direct3x3.store(c1, r2 + 8, accumulate: accumulate)
        Direct3x3.store(c2, r2 + 16, accumulate: accumulate)
        Direct3x3.store(d0, r3, accumulate: accumulate); Direct3x3.store(d1, r3 + 8, accumulate: accumulate)
        Direct3x3.store(d2, r3 + 16, accumulate: accumulate)
    }

    /// out[i, 0..<16] (+)= sum over c of packedA[c][i] * packedX[c][0..<16], for i in 0..<4; the
    /// 4 output rows are `rowStride` apart.
    @inline(__always)
    static func block4x16(
        packedA: UnsafePointer<Float>, packedX: UnsafePointer<Float>, k: Int,
        out: UnsafeMutablePointer<Float>, rowStride: Int, accumulate: Bool
    ) {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), b0 = SIMD8<Float>(), b1 = SIMD8<Float>()
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), d0 = SIMD8<Float>(), d1 = SIMD8<Float>()
        var w = packedA, xp = packedX
        for _ in 0..<k {
            let x0 = load(xp), x1 = load(xp + 8)
            let va = SIMD8<Float>(repeating: w[0]), vb = SIMD8<Float>(repeating: w[1])
            let vc = SIMD8<Float>(repeating: w[2]), vd = SIMD8<Float>(repeating: w[3])
            a0 = a0.addingProduct(x0, va); a1 = a1.addingProduct(x1, va)
            b0 = b0.addingProduct(x0, vb); b1 = b1.addingProduct(x1, vb)
            c0 = c0.addingProduct(x0, vc); c1 = c1.addingProduct(x1, vc)
            d0 = d0.addingProduct(x0, vd); d1 = d1.addingProduct(x1, vd)
            xp += strip; w += rowBlock
        }
        let r1 = out + rowStride, r2 = r1 + rowStride, r3 = r2 + rowStride
        Direct3x3.store(a0, out, accumulate: accumulate); Direct3x3.store(a1, out + 8, accumulate: accumulate)
        Direct3x3.store(b0, r1, accumulate: accumulate); Direct3x3.store(b1, r1 + 8, accumulate: accumulate)
        Direct3x3.store(c0, r2, accumulate: accumulate); Direct3x3.store(c1, r2 + 8, accumulate: accumulate)
        Direct3x3.store(d0, r3, accumulate: accumulate); Direct3x3.store(d1, r3 + 8, accumulate: accumulate)
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> { Direct3x3.load(p) }
}
