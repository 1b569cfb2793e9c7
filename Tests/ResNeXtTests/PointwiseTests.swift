import ResNeXt
import Testing

/// The 1x1-convolution kernel (`Pointwise`): its product against the definition in Double, with
/// A read directly and transposed, written and accumulated, over several blocks of columns with a
/// partial last one; and convolutions through it (1x1 stride 1; the column gradient of lowered
/// ones) against the OpenBLAS path it replaces (which the layer fixtures and the finite-difference
/// checks cover).
@Suite struct PointwiseTests {
    @Test(arguments: [
        (4, 16, 16),  // one register block, one strip
        (16, 64, 3072),  // 16 rows (an input gradient of 16 channels), 3 blocks of 1024 columns
        (64, 16, 2080),  // 16 deep: blocks of 1024 columns, the last of 32
        (8, 256, 336),  // 256 deep: blocks of 256 columns, the last of 80
        (12, 7, 48),  // a depth that is not a multiple of anything
        // blocks whose widths leave 0, 1 and 2 strips of 16 after the 24-column strips
        (8, 64, 48 * 5), (12, 32, 16 * 7), (4, 300, 16 * 11), (16, 16, 1024 * 2 + 32),
    ]) func productMatchesDefinition(shape: (Int, Int, Int)) {
        let (m, k, p) = shape
        var rng = SplitMix64(seed: 5)
        let a = (0..<(m * k)).map { _ in Float(rng.nextNormal()) }
        let x = (0..<(k * p)).map { _ in Float(rng.nextNormal()) }
        let y0 = (0..<(m * p)).map { _ in Float(rng.nextNormal()) }
        // the transposed copy of A: At (k, m), so that A (i, c) = At[c * m + i]
        var at = [Float](repeating: 0, count: m * k)
        for i in 0..<m { for c in 0..<k { at[c * m + i] = a[i * k + c] } }
        var expected = [Double](repeating: 0, count: m * p)
        for i in 0..<m {
            for c in 0..<k { for j in 0..<p { expected[i * p + j] += Double(a[i * k + c]) * Double(x[c * p + j]) } }
        }
        let scratch = [Float](repeating: .nan, count: Pointwise.scratchCount(m: m, k: k))
        #expect(Pointwise.applies(m: m, k: k, p: p))
        for (matrix, aRow, aColumn) in [(a, k, 1), (at, 1, m)] {
            for accumulate in [false, true] {
                var y = y0, s = scratch
                Pointwise.run(
                    a: matrix, aRow: aRow, aColumn: aColumn, x: x, ldx: p, y: &y, ldy: p, m: m, k: k, p: p,
                    accumulate: accumulate, scratch: &s)
                let want = accumulate ? expected.indices.map { expected[$0] + Double(y0[$0]) } : expected
                #expect(relativeError(y, want) < 1e-6, "\(shape), A row stride \(aRow), accumulate \(accumulate)")
            }
        }
    }

    @Test func stripCountsCoverTheBlock() {
        for columns in Swift.stride(from: 16, through: 1024, by: 16) {
            let (wide, narrow) = Pointwise.stripCounts(columns: columns)
            #expect(wide * 24 + narrow * 16 == columns && narrow <= 2 && wide >= 0, "\(columns) columns")
        }
    }

    @Test func appliesOnlyWhereItShould() {
        #expect(Pointwise.applies(m: 64, k: 64, p: 65536))
        #expect(Pointwise.applies(m: 512, k: 512, p: 16384))
        #expect(!Pointwise.applies(m: 1024, k: 1024, p: 4096))  // A beyond 1 MiB: OpenBLAS
        #expect(!Pointwise.applies(m: 6, k: 8, p: 64))  // rows in blocks of 4
        #expect(!Pointwise.applies(m: 8, k: 8, p: 72))  // columns in strips of 16
    }

    func run(_ shape: (c: Int, k: Int, kernel: Int, stride: Int, groups: Int, n: Int, h: Int, w: Int), pointwise: Bool) -> ConvolutionResult {
        let t = ConvolutionCase(
            c: shape.c, k: shape.k, kernel: shape.kernel, stride: shape.stride, padding: shape.kernel / 2,
            groups: shape.groups, n: shape.n, h: shape.h, w: shape.w, seed: 13)
        t.conv.path.pointwise = pointwise
        return ConvolutionResult(t)
    }

    /// (C, K, kernel, stride, groups, N, H, W)
    @Test(arguments: [
        (16, 64, 1, 1, 1, 3, 8, 8),  // 16 -> 64: forward 16 deep, input gradient 16 rows
        (64, 32, 1, 1, 2, 2, 16, 16),  // two groups of 32 -> 16
        (8, 12, 1, 1, 1, 2, 4, 4),  // 8 -> 12, 32 pixels
        (6, 8, 1, 1, 1, 2, 4, 4),  // 6 input channels: the input gradient (6 rows) falls back to OpenBLAS
        (8, 8, 3, 2, 2, 2, 8, 8),  // stride-2 3x3: the column gradient W^T dy, 36 rows
        (16, 32, 1, 2, 1, 2, 16, 16),  // stride-2 1x1 (a shortcut): the column gradient, 16 rows
    ]) func convolutionMatchesOpenBLAS(shape: (Int, Int, Int, Int, Int, Int, Int, Int)) {
        let ours = run(shape, pointwise: true)
        let blas = run(shape, pointwise: false)
        ours.expectMatches(blas, "\(shape)")
    }
}
