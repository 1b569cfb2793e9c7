/// Which of the engine's own kernels a float32 convolution uses where they apply; nil follows the
/// rules (each kernel wherever it applies; `Direct3x3`'s weight gradient where
/// `Direct3x3.weightGradientApplies`). Every path computes the same convolution; they differ in
/// rounding only (each is checked against PyTorch's fixtures and by finite differences).
/// `ConvolutionTuner` sets a layer's path by timing; benchmarks set it to compare paths.
public struct ConvolutionPath: Hashable, Sendable, CustomStringConvertible {
    public var direct3x3: Bool?
    public var directWeightGradient: Bool?
    public var pointwise: Bool?
    /// `RowLowering` for the im2col of float32 3x3 layers (the same values as the general copy).
    public var rowLowering: Bool?
    /// `Winograd` F(2x2, 3x3) for the forward and input gradient of float32 3x3 stride-1 layers
    /// (nil: where both groups' widths are 32 or more; the weight gradient follows the other
    /// settings).
    public var winograd: Bool?

    public init(
        direct3x3: Bool? = nil, directWeightGradient: Bool? = nil, pointwise: Bool? = nil, rowLowering: Bool? = nil, winograd: Bool? = nil
    ) {
        self.direct3x3 = direct3x3
        self.directWeightGradient = directWeightGradient
        self.pointwise = pointwise
        self.rowLowering = rowLowering
        self.winograd = winograd
    }

    /// The engine's rules (named "default"): every kernel of its own where it applies, Winograd
    /// where both groups' widths are 32 or more (at 16 the direct kernel was faster).
    public static let rules = ConvolutionPath()
    /// Every product through OpenBLAS (3x3 layers through im2col).
    public static let openBLAS = ConvolutionPath(direct3x3: false, pointwise: false, winograd: false)
    /// OpenBLAS, but `Pointwise` for 1x1 layers and for the column gradient of lowered 3x3 ones.
    public static let pointwiseKernel = ConvolutionPath(direct3x3: false, pointwise: true, winograd: false)
    /// `Direct3x3` forward and input gradient; the weight gradient through im2col and OpenBLAS.
    public static let direct = ConvolutionPath(direct3x3: true, directWeightGradient: false, pointwise: true, winograd: false)
    /// `Direct3x3` for the weight gradient too.
    public static let directWeights = ConvolutionPath(direct3x3: true, directWeightGradient: true, pointwise: true, winograd: false)
    /// `Winograd` forward and input gradient; the weight gradient through im2col and OpenBLAS.
    public static let winogradKernel = ConvolutionPath(direct3x3: true, directWeightGradient: false, pointwise: true, winograd: true)
    /// `Winograd` forward and input gradient, `Direct3x3` for the weight gradient.
    public static let winogradDirectWeights = ConvolutionPath(direct3x3: true, directWeightGradient: true, pointwise: true, winograd: true)

    /// The paths by the names that logs, `bench --tune-convolutions` and checkpoints use; the
    /// order is the order in which the tuner tries them.
    public static let named: [(name: String, path: ConvolutionPath)] = [
        ("default", .rules), ("openblas", .openBLAS), ("pointwise", .pointwiseKernel), ("direct", .direct),
        ("direct-weights", .directWeights), ("winograd", .winogradKernel), ("winograd-weights", .winogradDirectWeights),
    ]

    public init?(name: String) {
        guard let found = Self.named.first(where: { $0.name == name }) else { return nil }
        self = found.path
    }

    public var description: String {
        if let name = Self.named.first(where: { $0.path == self })?.name { return name }
        let fields = [
            ("direct3x3", direct3x3), ("weights", directWeightGradient), ("pointwise", pointwise), ("rows", rowLowering), ("winograd", winograd),
        ]
        return fields.map { "\($0.0)=\($0.1.map(String.init) ?? "nil")" }.joined(separator: ",")
    }
}

extension Conv2d {
    /// True when this float32 3x3 layer with padding 1 lowers a row at a time (`RowLowering`) at
    /// planes of h x w: stride 1 with rows a multiple of 8 wide, or stride 2 on phase planes
    /// (`usesPhasePlanes`) with output rows a multiple of 8 wide.
    func usesRowLowering(h: Int, w: Int) -> Bool {
        guard (path.rowLowering ?? true) && T.self == Float.self && kernel == 3 && padding == 1 else { return false }
        return stride == 1 ? w % 8 == 0 : usesPhasePlanes(h: h, w: w) && (w / 2) % 8 == 0
    }

    /// True when this float32 convolution's product with m rows over p columns runs through
    /// `Pointwise`: for a 1x1 stride-1 layer the forward (Kg rows) and the input gradient (Cg);
    /// for a `lowered` one (im2col) the column gradient W^T dy (Cg*R*S rows), where OpenBLAS
    /// is slow on the shape (docs/performance.md). The forward of a lowered layer, Cg*R*S deep,
    /// stays with OpenBLAS (a tie).
    func usesPointwiseKernel(m: Int, k: Int, p: Int, lowered: Bool = false) -> Bool {
        (path.pointwise ?? true) && T.self == Float.self && isPointwise != lowered && Pointwise.applies(m: m, k: k, p: p)
    }

    /// True when this float32 3x3 stride-1 "same" convolution runs forward, input gradient and
    /// weight gradient through `Direct3x3` at planes of h x w.
    func usesDirect(h: Int, w: Int) -> Bool {
        let cg = inChannels / groups, kg = outChannels / groups
        return (path.direct3x3 ?? true) && T.self == Float.self && kernel == 3 && stride == 1 && padding == 1
            && Direct3x3.applies(cin: cg, kout: kg, h: h, w: w) && Direct3x3.applies(cin: kg, kout: cg, h: h, w: w)
    }

    /// True when this float32 3x3 stride-1 "same" convolution runs its forward and input gradient
    /// through `Winograd` at planes of h x w.
    func usesWinograd(h: Int, w: Int) -> Bool {
        let cg = inChannels / groups, kg = outChannels / groups
        return (path.winograd ?? (cg >= 32 && kg >= 32)) && T.self == Float.self && kernel == 3 && stride == 1 && padding == 1
            && Winograd.applies(cin: cg, kout: kg, h: h, w: w) && Winograd.applies(cin: kg, kout: cg, h: h, w: w)
    }

    /// True when the weight gradient of this layer at planes of h x w runs through `Direct3x3`.
    func usesDirectWeightGradient(h: Int, w: Int) -> Bool {
        usesDirect(h: h, w: w) && (path.directWeightGradient ?? Direct3x3.weightGradientApplies(cin: inChannels / groups, kout: outChannels / groups))
    }

    /// True when this layer at planes of h x w can take its input x as a batch norm's output read
    /// from the norm's input (`NormalizedInput`, the `normalize` argument of `forward` and
    /// `backward`): every path that reads x (the forward, and the weight gradient) copies it a
    /// plane or a row at a time, into `Direct3x3`'s padded planes or through `RowLowering`.
    public func readsNormalizedInput(h: Int, w: Int) -> Bool {
        guard T.self == Float.self && kernel == 3 else { return false }
        let rows = usesRowLowering(h: h, w: w)
        return (usesDirect(h: h, w: w) || rows) && (usesDirectWeightGradient(h: h, w: w) || rows)
    }

    /// True for a stride-2 convolution whose output plane is a quarter of its even-sized input
    /// (3x3 with padding 1 and 1x1 without, as in ResNeXt): every column row is then a shifted
    /// copy of one of the input's four phase planes (even or odd rows x even or odd columns), so
    /// im2col is one split of the input plus the stride-1 `shiftedCopy`s, and col2im their adjoint.
    func usesPhasePlanes(h: Int, w: Int) -> Bool {
        let (p, q) = outputSize(h, w)
        return stride == 2 && h % 2 == 0 && w % 2 == 0 && p == h / 2 && q == w / 2
    }

    /// What this layer's current path amounts to at planes of h x w: the direct 3x3 kernel, its
    /// weight gradient, and the 1x1 kernel (a 1x1 layer's products, or a lowered layer's
    /// column gradient). Two paths with the same kernels run the same code.
    func kernels(h: Int, w: Int) -> [Bool] {
        let pointwise = (path.pointwise ?? true) && T.self == Float.self && (isPointwise || !backwardAsConvolution)
        return [
            usesDirect(h: h, w: w), usesDirectWeightGradient(h: h, w: w), pointwise && !usesDirect(h: h, w: w), usesWinograd(h: h, w: w),
        ]
    }

    /// The lowering (im2col, col2im) of n images of h x w on this layer's path.
    func lowering(n: Int, h: Int, w: Int) -> Lowering {
        let (p, q) = outputSize(h, w)
        return Lowering(
            kernel: kernel, stride: stride, padding: padding, h: h, w: w, p: p, q: q,
            byRows: usesRowLowering(h: h, w: w), phasePlanes: usesPhasePlanes(h: h, w: w),
            spare: scratchCount(n: n, h: h, w: w))
    }
}
