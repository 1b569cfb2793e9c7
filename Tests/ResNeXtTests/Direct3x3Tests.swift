import ResNeXt
import Testing

/// The direct 3x3 kernel against the im2col + GEMM path it replaces (which the layer fixtures and
/// the finite-difference checks cover) and against the definition (`referenceConvolution`): forward, input gradient written and accumulated, weight
/// gradient (direct too, in chunks of images), for both register blockings (planes 16k wide, and
/// 8 wide) and several groupings.
@Suite struct Direct3x3Tests {
    func run(c: Int, k: Int, groups: Int, n: Int, h: Int, w: Int, direct: Bool) -> ConvolutionResult {
        let t = ConvolutionCase(c: c, k: k, kernel: 3, padding: 1, groups: groups, n: n, h: h, w: w, seed: 11)
        t.conv.path.direct3x3 = direct
        return ConvolutionResult(t)
    }

    @Test(arguments: [
        (16, 16, 4, 3, 6, 16),  // 4 channels per group, planes 16 wide (4 x 16 blocking), odd rows
        (8, 8, 1, 2, 8, 8),  // planes 8 wide, even height (4 channels x 2 rows)
        (32, 32, 2, 2, 4, 32),  // 16 per group, two 16-column blocks per row
        (64, 64, 4, 2, 3, 8),  // 16 per group at 8 wide, odd height (8 x 8 blocking)
        (8, 8, 2, 5, 32, 32),  // 5 images: the weight gradient's chunks of 3 images at 32 x 32, and a rest of 2
        (64, 64, 2, 2, 4, 16),  // 32 per group, weight gradient direct too
        (8, 8, 2, 2, 5, 16),  // odd height: the weight gradient's rows in pairs, then one
        (128, 128, 2, 2, 4, 16),  // 64 per group: direct forward and input gradient, weight gradient by GEMM
    ]) func directEqualsIm2col(shape: (Int, Int, Int, Int, Int, Int)) {
        let (c, k, groups, n, h, w) = shape
        let direct = run(c: c, k: k, groups: groups, n: n, h: h, w: w, direct: true)
        let reference = run(c: c, k: k, groups: groups, n: n, h: h, w: w, direct: false)
        direct.expectMatches(reference, "\(shape)")
        // and against the definition
        let t = ConvolutionCase(c: c, k: k, kernel: 3, padding: 1, groups: groups, n: n, h: h, w: w, seed: 11)
        let definition = referenceConvolution(
            x: t.x.toArray(), weight: t.weights, dy: t.dy.toArray(), c: c, k: k, kernel: 3,
            stride: 1, padding: 1, groups: groups, n: n, h: h, w: w, p: h, q: w)
        #expect(relativeError(direct.y, definition.y) < 1e-6, "forward \(shape)")
        #expect(relativeError(direct.dx, definition.dx) < 1e-6, "dx \(shape)")
        // accumulated over the two backward passes of a `ConvolutionResult`
        #expect(relativeError(direct.dw, definition.dw.map { 2 * $0 }) < 1e-6, "dW \(shape)")
    }

    @Test func appliesOnlyWhereItShould() {
        #expect(Direct3x3.applies(cin: 16, kout: 16, h: 32, w: 32))
        #expect(!Direct3x3.applies(cin: 16, kout: 16, h: 10, w: 10))  // width not a multiple of 8
        #expect(Direct3x3.applies(cin: 4, kout: 4, h: 8, w: 8))  // 8 wide, 4 channels x 2 rows
        #expect(!Direct3x3.applies(cin: 4, kout: 4, h: 7, w: 8))  // ... needs an even height, else 8 channels
        #expect(!Direct3x3.applies(cin: 6, kout: 6, h: 16, w: 16))  // 4 x 16 blocking needs multiples of 4
    }
}
