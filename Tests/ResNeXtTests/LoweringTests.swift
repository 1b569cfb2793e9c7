import ResNeXt
import Testing

/// Every way `Conv2d` lowers a convolution (shifted copies for stride-1 "same", phase planes for
/// stride 2 on even planes, the general gather, with the SIMD split for planes 16k wide; and
/// `RowLowering`'s rows for 3x3 stride 1 and 2 where the rows are 8k wide), forward
/// and both gradients (the input gradient written and added) in float32, against the definition
/// summed in Double here.
@Suite struct LoweringTests {
    @Test(arguments: [
        (3, 2, 1, 4, 32, 32),  // stride-2 3x3 on phase planes, 16-wide SIMD split (stage 2's first block)
        (3, 2, 1, 2, 16, 16),  // ... 8 wide (stage 3's)
        (1, 2, 0, 1, 16, 16),  // stride-2 1x1 shortcut on phase planes: only phase (even, even)
        (1, 2, 0, 2, 10, 6),  // ... scalar split
        (3, 2, 1, 2, 10, 6),  // phase planes, scalar split
        (3, 2, 1, 2, 9, 10),  // odd height: the general gather
        (3, 1, 1, 4, 8, 8),  // stride-1 same: shifted copies
        (3, 1, 0, 1, 7, 9),  // stride 1 without padding: the general gather
    ]) func loweringMatchesDefinition(shape: (Int, Int, Int, Int, Int, Int)) {
        let (kernel, stride, padding, groups, h, w) = shape
        let (n, c, k) = (3, 8, 12)
        for rows in [true, false] {
            let t = ConvolutionCase(
                c: c, k: k, kernel: kernel, stride: stride, padding: padding, groups: groups,
                n: n, h: h, w: w, seed: 5)
            t.conv.path.direct3x3 = false
            t.conv.path.rowLowering = rows
            t.forward()
            t.backward()
            let (p, q) = t.conv.outputSize(h, w)
            let ref = referenceConvolution(
                x: t.x.toArray(), weight: t.weights, dy: t.dy.toArray(), c: c, k: k, kernel: kernel,
                stride: stride, padding: padding, groups: groups, n: n, h: h, w: w, p: p, q: q)
            let label = "\(shape), row lowering \(rows)"
            #expect(relativeError(t.y.toArray(), ref.y) < 1e-6, "forward \(label)")
            #expect(relativeError(t.dx.toArray(), ref.dx) < 1e-6, "dx \(label)")
            #expect(relativeError(t.weightGradient, ref.dw) < 1e-6, "dW \(label)")
            // the input gradient added to what dx holds (col2im's other mode): twice the definition's
            t.backward(accumulate: true)
            #expect(relativeError(t.dx.toArray(), ref.dx.map { 2 * $0 }) < 1e-6, "accumulated dx \(label)")
        }
    }

    /// `RowLowering` (a row at a time) against `Conv2d`'s plane-at-a-time lowering, bit for bit:
    /// the same copies, and the same sums in the same order. Stride 2 at 8 and 16 output columns
    /// (stages 3 and 2), stride 1 at 8 and 32, with and without the direct 3x3 kernel (the
    /// weight gradient and im2col(dy) lower too), with the input gradient written and added.
    @Test(arguments: [
        (2, 4, 16, 16, false), (2, 2, 32, 32, false), (2, 1, 16, 48, false),
        (1, 4, 8, 8, false), (1, 2, 32, 32, false), (1, 1, 8, 16, true),
    ]) func rowLoweringIsBitwiseThePlaneLowering(shape: (Int, Int, Int, Int, Bool)) {
        let (stride, groups, h, w, direct) = shape
        let results = [true, false].map { rows in
            let t = ConvolutionCase(c: 8, k: 12, kernel: 3, stride: stride, padding: 1, groups: groups, n: 3, h: h, w: w, seed: 11)
            t.conv.path.direct3x3 = direct
            t.conv.path.directWeightGradient = false
            t.conv.path.rowLowering = rows
            return ConvolutionResult(t)
        }
        let (row, plane) = (results[0], results[1])
        let bits = { (a: [Float]) in a.map(\.bitPattern) }
        #expect(bits(row.y) == bits(plane.y), "forward \(shape)")
        #expect(bits(row.dx) == bits(plane.dx), "dx \(shape)")
        #expect(bits(row.dxAccumulated) == bits(plane.dxAccumulated), "accumulated dx \(shape)")
        #expect(bits(row.dw) == bits(plane.dw), "dW \(shape)")
        #expect(row.y.contains { $0 != 0 } && row.dx.contains { $0 != 0 } && row.dw.contains { $0 != 0 })
    }
}
