// The plain reference twins of the engine's kernels, to read first: each is the definition,
// summed in Double, that the fast paths are checked against (`LoweringTests`, `Direct3x3Tests`;
// `PointwiseTests` and `GradientCheckTests` hold the products' and the other layers'), while the
// layer fixtures check every path against PyTorch.

/// y, dx, dW of the convolution straight from its definition, x (C, N, H, W), W (K, Cg, R, S).
func referenceConvolution(
    x: [Float], weight: [Float], dy: [Float], c: Int, k: Int, kernel: Int, stride: Int,
    padding: Int, groups: Int, n: Int, h: Int, w: Int, p: Int, q: Int
)
    -> (y: [Double], dx: [Double], dw: [Double])
{
    let cg = c / groups, kg = k / groups
    var y = [Double](repeating: 0, count: k * n * p * q), dx = [Double](repeating: 0, count: c * n * h * w)
    var dw = [Double](repeating: 0, count: weight.count)
    for ko in 0..<k {
        let g = ko / kg
        for ci in 0..<cg {
            let cin = g * cg + ci
            for r in 0..<kernel {
                for s in 0..<kernel {
                    let wi = ((ko * cg + ci) * kernel + r) * kernel + s
                    for ni in 0..<n {
                        for op in 0..<p {
                            let ih = op * stride - padding + r
                            guard ih >= 0 && ih < h else { continue }
                            for oq in 0..<q {
                                let iw = oq * stride - padding + s
                                guard iw >= 0 && iw < w else { continue }
                                let xi = ((cin * n + ni) * h + ih) * w + iw, yi = ((ko * n + ni) * p + op) * q + oq
                                y[yi] += Double(weight[wi]) * Double(x[xi])
                                dx[xi] += Double(weight[wi]) * Double(dy[yi])
                                dw[wi] += Double(x[xi]) * Double(dy[yi])
                            }
                        }
                    }
                }
            }
        }
    }
    return (y, dx, dw)
}
