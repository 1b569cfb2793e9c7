import ResNeXt
import Testing

/// Winograd F(2x2, 3x3) (`Winograd`, the `winograd` convolution path): forward and input
/// gradient, written and accumulated, against the definition (`referenceConvolution`, in
/// Double), over planes 16 and 32 wide, one image chunk and several, and several groupings.
@Suite struct WinogradTests {
    @Test(arguments: [
        (16, 16, 4, 3, 16, 16),  // 4 channels per group, 4 images per chunk: one chunk
        (8, 8, 1, 2, 32, 32),  // one image per chunk: two chunks
        (32, 32, 2, 5, 4, 16),  // 16 per group, 4 rows: 8 images per chunk
        (64, 64, 4, 9, 16, 16),  // 16 per group, 3 chunks, the last of one image
        (16, 32, 2, 2, 8, 32),  // more outputs than inputs (the input gradient swaps them)
    ])
    func matchesTheDefinition(shape: (Int, Int, Int, Int, Int, Int)) {
        let (c, k, groups, n, h, w) = shape
        let t = ConvolutionCase(c: c, k: k, kernel: 3, padding: 1, groups: groups, n: n, h: h, w: w, seed: 13)
        t.conv.path = .winogradKernel
        let result = ConvolutionResult(t)
        let definition = referenceConvolution(
            x: t.x.toArray(), weight: t.weights, dy: t.dy.toArray(), c: c, k: k, kernel: 3, stride: 1, padding: 1, groups: groups,
            n: n, h: h, w: w, p: h, q: w)
        let forward = relativeError(result.y, definition.y), input = relativeError(result.dx, definition.dx)
        #expect(forward < 1e-6, "forward \(shape): \(forward)")
        #expect(input < 1e-6, "dx \(shape): \(input)")
        #expect(relativeError(result.dxAccumulated, definition.dx.map { 2 * $0 }) < 1e-6, "accumulated dx \(shape)")
        #expect(relativeError(result.dw, definition.dw.map { 2 * $0 }) < 1e-6, "dW \(shape)")
    }

    @Test func appliesOnlyWhereItShould() {
        #expect(Winograd.applies(cin: 16, kout: 16, h: 32, w: 32))
        #expect(Winograd.applies(cin: 64, kout: 64, h: 16, w: 16))
        #expect(!Winograd.applies(cin: 64, kout: 64, h: 8, w: 8))  // tile rows of 4: not a whole 8-tile block
        #expect(!Winograd.applies(cin: 16, kout: 16, h: 6, w: 16))  // 24 tiles per image: not whole strips
        #expect(!Winograd.applies(cin: 6, kout: 6, h: 16, w: 16))  // channels not in blocks of 4
    }
}
