/// Winograd's minimal filtering F(2x2, 3x3) for float32 3x3 stride-1 "same" convolutions, any
/// groups (Lavin & Gray 2016): each 2x2 output tile is A^T [(G w G^T) ⊙ (B^T d B)] A for its 4x4
/// input tile d, so a tile costs 16 multiplies per (output, input) channel pair instead of the
/// 36 of the direct definition (2.25x fewer). Batched over tiles, the element-wise stage is 16
/// matrix products per group, M[ξ] (Kg, T) = U[ξ] (Kg, Cg) x V[ξ] (Cg, T), one per element ξ of
/// the 4x4 transformed tile, run by `Pointwise`.
///
/// Work goes a chunk of images at a time (about 256 tiles), so that the transformed input and
/// the products of a chunk stay in L2. Rows are taken 8 tiles at a time: a tile j of a row reads
/// input columns 2j-1 ... 2j+2, which are the odd and even halves of the row (`deinterleave`).
///
/// The input gradient of the same layer is this convolution of dy with the flipped, transposed
/// weights (`Conv2d.flipWeights`), as for `Direct3x3`. The sums are in another order than the
/// direct definition's and the transforms add a few roundings: the results agree with it to
/// float32 rounding (`WinogradTests`, against the definition in Double).
public enum Winograd {
    /// Where it applies: tile rows a whole number of 8-tile blocks (widths 16, 32, ...), tiles per
    /// image a whole number of `Pointwise`'s 16-column strips (heights 4, 8, ...), and channel
    /// counts `Pointwise` takes.
    public static func applies(cin: Int, kout: Int, h: Int, w: Int) -> Bool {
        h % 2 == 0 && w % 16 == 0 && w > 0 && h > 0 && tilesPerImage(h: h, w: w) % 16 == 0
            && Pointwise.applies(m: kout, k: cin, p: tilesPerChunk(h: h, w: w))
    }

    static func tilesPerImage(h: Int, w: Int) -> Int { (h / 2) * (w / 2) }

    /// Images per chunk: about 256 tiles.
    static func imagesPerChunk(h: Int, w: Int) -> Int { max(1, 256 / tilesPerImage(h: h, w: w)) }

    static func tilesPerChunk(h: Int, w: Int) -> Int { imagesPerChunk(h: h, w: w) * tilesPerImage(h: h, w: w) }

    /// Floats of scratch `run` needs: the transformed weights of every group, the transformed
    /// input and the products of one chunk, the row transforms of one plane, and `Pointwise`'s.
    public static func scratchCount(cin: Int, kout: Int, groups: Int, h: Int, w: Int) -> Int {
        let t = tilesPerChunk(h: h, w: w)
        return 16 * kout * cin * groups + 16 * cin * t + 16 * kout * t + 4 * h * (w / 2) + (w / 2 + 16) * 2 + w
            + Pointwise.scratchCount(m: kout, k: cin)
    }

    /// U[g][ξ][k][c] = (G w G^T)[ξ] for the (Kg, Cg, 3, 3) weights of each group, with
    /// G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
    static func transformWeights(_ weights: UnsafePointer<Float>, into u: UnsafeMutablePointer<Float>, cin: Int, kout: Int, groups: Int) {
        for g in 0..<groups {
            for k in 0..<kout {
                for c in 0..<cin {
                    let f = weights + ((g * kout + k) * cin + c) * 9
                    // G f (4 x 3) column by column, then each of its rows times G^T
                    var gf = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())
                    for s in 0..<3 {
                        let (a, b, d) = (f[s], f[3 + s], f[6 + s])
                        let column = SIMD4<Float>(a, (a + b + d) * 0.5, (a - b + d) * 0.5, d)
                        if s == 0 { gf.0 = column } else if s == 1 { gf.1 = column } else { gf.2 = column }
                    }
                    for r in 0..<4 {
                        let (a, b, d) = (gf.0[r], gf.1[r], gf.2[r])
                        let row = SIMD4<Float>(a, (a + b + d) * 0.5, (a - b + d) * 0.5, d)
                        for s in 0..<4 { u[((g * 16 + r * 4 + s) * kout + k) * cin + c] = row[s] }
                    }
                }
            }
        }
    }

    /// y (Kg*G, N, H, W) = conv3x3(x (Cg*G, N, H, W)), padding 1, written or added to with
    /// `accumulate`. With `normalize`, x is a batch norm's input read as its output with ReLU.
    static func run(
        x: UnsafePointer<Float>, weights: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, cin: Int, kout: Int,
        groups: Int, n: Int, h: Int, w: Int, accumulate: Bool, scratch: UnsafeMutablePointer<Float>,
        normalize: NormalizedInput? = nil
    ) {
        let half = w / 2, perImage = tilesPerImage(h: h, w: w), chunk = imagesPerChunk(h: h, w: w)
        let u = scratch, v = u + 16 * kout * cin * groups, t = tilesPerChunk(h: h, w: w)
        let m = v + 16 * cin * t, rows = m + 16 * kout * t, line = rows + 4 * h * half
        let pointwiseScratch = line + (half + 16) * 2 + w
        transformWeights(weights, into: u, cin: cin, kout: kout, groups: groups)
        for g in 0..<groups {
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let images = min(chunk, n - n0), tiles = images * perImage
                for c in 0..<cin {
                    let channel = g * cin + c
                    for i in 0..<images {
                        let plane = x + (channel * n + n0 + i) * h * w
                        transformInput(
                            plane, into: v + c * t + i * perImage, stride: cin * t, h: h, w: w, rows: rows, line: line,
                            normalize: normalize.map { ($0, channel, n0 + i) })
                    }
                }
                let ug = u + g * 16 * kout * cin
                for xi in 0..<16 {
                    Pointwise.run(
                        a: ug + xi * kout * cin, aRow: cin, aColumn: 1, x: v + xi * cin * t, ldx: t, y: m + xi * kout * t, ldy: t,
                        m: kout, k: cin, p: tiles, accumulate: false, scratch: pointwiseScratch)
                }
                for k in 0..<kout {
                    for i in 0..<images {
                        let plane = y + ((g * kout + k) * n + n0 + i) * h * w
                        transformOutput(m + k * t + i * perImage, stride: kout * t, into: plane, h: h, w: w, accumulate: accumulate)
                    }
                }
            }
        }
    }

    /// V[ξ][tile] = (B^T d B)[ξ] for every 4x4 input tile d of one plane (tile (i, j) covers rows
    /// 2i-1 ... 2i+2 and columns 2j-1 ... 2j+2, zero outside), B^T = [[1, 0, -1, 0], [0, 1, 1, 0],
    /// [0, -1, 1, 0], [0, 1, 0, -1]]. The element ξ of every tile is `stride` floats after the
    /// previous one. `rows` holds the row transforms of the plane (4 per input row, w/2 wide);
    /// `line` the halves of one row and, with `normalize`, the row normalized.
    @inline(__always)
    static func transformInput(
        _ plane: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>, stride: Int, h: Int, w: Int,
        rows: UnsafeMutablePointer<Float>, line: UnsafeMutablePointer<Float>, normalize: (NormalizedInput, Int, Int)?
    ) {
        let half = w / 2
        // even[j] = row[2j] for j <= half (even[half] = 0), odd[j] = row[2j - 1] for j >= 0 (odd[0] = 0)
        let even = line, odd = line + half + 8
        even[half] = 0
        odd[0] = 0
        for r in 0..<h {
            var src = plane + r * w
            if let (norm, channel, image) = normalize {
                let f = norm.factors(channel, image)
                let normalized = line + (half + 16) * 2
                var j = 0
                while j < w {
                    Direct3x3.store(NormalizedInput.apply(Direct3x3.load(src + j), f), normalized + j, accumulate: false)
                    j &+= 8
                }
                src = UnsafePointer(normalized)
            }
            deinterleave(src, even: even, odd: odd + 1, half: half)
            let out = rows + r * 4 * half
            var j = 0
            while j < half {
                let c0 = Direct3x3.load(odd + j), c1 = Direct3x3.load(even + j)
                let c2 = Direct3x3.load(odd + j + 1), c3 = Direct3x3.load(even + j + 1)
                Direct3x3.store(c0 - c2, out + j, accumulate: false)
                Direct3x3.store(c1 + c2, out + half + j, accumulate: false)
                Direct3x3.store(c2 - c1, out + 2 * half + j, accumulate: false)
                Direct3x3.store(c1 - c3, out + 3 * half + j, accumulate: false)
                j &+= 8
            }
        }
        let zero = SIMD8<Float>()
        for i in 0..<(h / 2) {
            let ra = 2 * i - 1, rb = 2 * i, rc = 2 * i + 1, rd = 2 * i + 2
            for s in 0..<4 {
                var j = 0
                while j < half {
                    let a = ra >= 0 ? Direct3x3.load(rows + (ra * 4 + s) * half + j) : zero
                    let b = Direct3x3.load(rows + (rb * 4 + s) * half + j)
                    let c = Direct3x3.load(rows + (rc * 4 + s) * half + j)
                    let d = rd < h ? Direct3x3.load(rows + (rd * 4 + s) * half + j) : zero
                    let tile = i * half + j
                    Direct3x3.store(a - c, v + s * stride + tile, accumulate: false)
                    Direct3x3.store(b + c, v + (4 + s) * stride + tile, accumulate: false)
                    Direct3x3.store(c - b, v + (8 + s) * stride + tile, accumulate: false)
                    Direct3x3.store(b - d, v + (12 + s) * stride + tile, accumulate: false)
                    j &+= 8
                }
            }
        }
    }

    /// The 2x2 outputs of every tile of one plane, A^T M A with A^T = [[1, 1, 1, 0], [0, 1, -1, -1]],
    /// from the products M (element ξ of every tile `stride` floats after the previous one).
    @inline(__always)
    static func transformOutput(_ m: UnsafePointer<Float>, stride: Int, into plane: UnsafeMutablePointer<Float>, h: Int, w: Int, accumulate: Bool) {
        let half = w / 2
        let out = UnsafeMutableRawPointer(plane)
        for i in 0..<(h / 2) {
            var j = 0
            while j < half {
                let tile = m + i * half + j
                @inline(__always) func e(_ xi: Int) -> SIMD8<Float> { Direct3x3.load(tile + xi * stride) }
                // along each row of M: m0 + m1 + m2 and m1 - m2 - m3; then down the columns
                let r00 = e(0) + e(1) + e(2), r01 = e(1) - e(2) - e(3)
                let r10 = e(4) + e(5) + e(6), r11 = e(5) - e(6) - e(7)
                let r20 = e(8) + e(9) + e(10), r21 = e(9) - e(10) - e(11)
                let r30 = e(12) + e(13) + e(14), r31 = e(13) - e(14) - e(15)
                var top = SIMD16<Float>(), bottom = SIMD16<Float>()
                top.evenHalf = r00 + r10 + r20
                top.oddHalf = r01 + r11 + r21
                bottom.evenHalf = r10 - r20 - r30
                bottom.oddHalf = r11 - r21 - r31
                let row0 = (2 * i * w + 2 * j) * 4, row1 = row0 + w * 4
                if accumulate {
                    top += out.loadUnaligned(fromByteOffset: row0, as: SIMD16<Float>.self)
                    bottom += out.loadUnaligned(fromByteOffset: row1, as: SIMD16<Float>.self)
                }
                out.storeBytes(of: top, toByteOffset: row0, as: SIMD16<Float>.self)
                out.storeBytes(of: bottom, toByteOffset: row1, as: SIMD16<Float>.self)
                j &+= 8
            }
        }
    }
}
