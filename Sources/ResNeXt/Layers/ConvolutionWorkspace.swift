// The workspace a convolution layer asks its model for: im2col columns a chunk of images at a
// time, `Direct3x3`'s padded planes, the flipped weights of the input gradient, phase planes and
// `Pointwise`'s packed operands, laid out one after another in one buffer the model shares.

extension Conv2d {
    /// Column floats per chunk that im2col works in: the column buffer of a chunk of images stays
    /// in cache between im2col and its GEMMs (2 MB per BLAS thread, so that threaded GEMMs still
    /// get wide enough products), instead of streaming the whole batch's columns (9x the input)
    /// through memory three times. Fixed when the model is built (it sizes the workspace).
    static var chunkBudget: Int { (1 << 19) * max(1, blasThreads) }

    /// Rows of the column matrix: Cg*R*S for x, and Kg*R*S for dy when `backwardAsConvolution`.
    var columnRows: Int {
        let rows = (inChannels / groups) * kernel * kernel
        return backwardAsConvolution ? max(rows, (outChannels / groups) * kernel * kernel) : rows
    }

    /// Images per im2col chunk for a batch of n images of h x w.
    func imagesPerChunk(n: Int, h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        let perImage = columnRows * p * q
        return max(1, min(n, columnBudget / max(perImage, 1)))
    }

    /// Floats of column workspace this layer needs for a batch of n images of h x w (with, when
    /// `backwardAsConvolution`, room for the flipped weights after the columns).
    public func columnCount(n: Int, h: Int, w: Int) -> Int {
        let cg = inChannels / groups, kg = outChannels / groups
        if isPointwise {
            // `Pointwise`'s packed weights and block of x, forward (Kg x Cg) or input gradient (Cg x Kg)
            return T.self == Float.self ? max(Pointwise.scratchCount(m: kg, k: cg), Pointwise.scratchCount(m: cg, k: kg)) : 0
        }
        let columnGradient = T.self == Float.self && !backwardAsConvolution ? Pointwise.scratchCount(m: cg * kernel * kernel, k: kg) : 0
        return columnGradientScratch(n: n, h: h, w: w) + columnGradient
    }

    /// Where `Pointwise`'s scratch for the column gradient (dcol = W^T dy) starts in the workspace:
    /// after the columns, the flipped weights and the phase planes.
    func columnGradientScratch(n: Int, h: Int, w: Int) -> Int {
        scratchCount(n: n, h: h, w: w) + (backwardAsConvolution ? weightCount : 0) + (usesPhasePlanes(h: h, w: w) ? h * w : 0)
    }

    /// Floats at the start of the workspace for the im2col columns of one chunk, or for
    /// `Direct3x3`'s padded planes; the flipped weights, or a stride-2 layer's phase planes
    /// (`usesPhasePlanes`), follow them.
    func scratchCount(n: Int, h: Int, w: Int) -> Int {
        let (p, q) = outputSize(h, w)
        let columns = columnRows * imagesPerChunk(n: n, h: h, w: w) * p * q
        let direct =
            kernel == 3
            ? max(
                Direct3x3.scratchCount(cin: max(inChannels, outChannels) / groups, h: h, w: w),
                Direct3x3.weightGradientScratchCount(cin: inChannels / groups, n: n, h: h, w: w)) : 0
        let cg = inChannels / groups, kg = outChannels / groups
        let winograd =
            T.self == Float.self && kernel == 3 && stride == 1 && Winograd.applies(cin: cg, kout: kg, h: h, w: w)
                && Winograd.applies(cin: kg, kout: cg, h: h, w: w)
            ? max(
                Winograd.scratchCount(cin: cg, kout: kg, groups: groups, h: h, w: w),
                Winograd.scratchCount(cin: kg, kout: cg, groups: groups, h: h, w: w)) : 0
        return max(columns, direct, winograd)
    }
}
