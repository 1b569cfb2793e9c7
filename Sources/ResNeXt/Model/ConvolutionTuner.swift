/// Chooses each convolution's path by timing them, the way `torch.backends.cudnn.benchmark`
/// does: the fastest path of one machine is not another's. On this project's 2-core AMD
/// machine the engine's own kernels win; on a 16-core AVX-512 Xeon, where OpenBLAS runs
/// 512-bit kernels and ours are 256-bit, OpenBLAS wins most 1x1 and many 3x3 shapes
/// (docs/performance.md).
public enum ConvolutionTuner {
    /// Median seconds of forward, backward (with the input gradient unless `inputGradient` is
    /// false) and their im2col/col2im, and the FLOPs of both, of a copy of `model` on random
    /// data (n images of h x w), for each path; the paths alternate within each repetition.
    public static func time(
        _ model: Conv2d<Float>, h: Int, w: Int, n: Int, paths: [ConvolutionPath], repeats: Int,
        rng: inout SplitMix64, inputGradient: Bool = true
    )
        -> [(forward: Double, backward: Double, lowering: Double, flops: Double)]
    {
        let wasProfiling = Profile.enabled
        Profile.enabled = true
        defer { Profile.enabled = wasProfiling; Profile.reset() }
        var layout = StoreLayout()
        let conv = Conv2d<Float>(
            model.name, model.inChannels, model.outChannels, kernel: model.kernel, stride: model.stride,
            padding: model.padding, groups: model.groups, layout: &layout)
        let store = ParameterStore<Float>(layout)
        conv.bind(store)
        let (p, q) = conv.outputSize(h, w)
        let x = Buffer<Float>(count: n * conv.inChannels * h * w), dx = Buffer<Float>(count: n * conv.inChannels * h * w)
        let y = Buffer<Float>(count: n * conv.outChannels * p * q), dy = Buffer<Float>(count: n * conv.outChannels * p * q)
        for i in 0..<store.params.count { store.params.base[i] = Float(rng.nextNormal()) * 0.1 }
        for i in 0..<x.count { x.base[i] = Float(rng.nextNormal()) }
        for i in 0..<dy.count { dy.base[i] = Float(rng.nextNormal()) }
        let col = Buffer<Float>(count: max(1, conv.columnCount(n: n, h: h, w: w)))
        var forward = [[Double]](repeating: [], count: paths.count), backward = forward, lowering = forward
        for _ in 0..<repeats {
            for (i, path) in paths.enumerated() {
                conv.path = path
                Profile.reset()
                var t0 = Profile.now()
                conv.forward(x: x.base, y: y.base, n: n, h: h, w: w, col: col.base)
                forward[i].append(Profile.now() - t0)
                t0 = Profile.now()
                conv.backward(x: x.base, dy: dy.base, dx: inputGradient ? dx.base : nil, n: n, h: h, w: w, col: col.base)
                backward[i].append(Profile.now() - t0)
                lowering[i].append(Profile.seconds[WorkKind.im2col.rawValue])
            }
        }
        let flops = (inputGradient ? 6 : 4) * Double(conv.macsPerImage(h: h, w: w) * n)
        let median = { (a: [Double]) in a.sorted()[repeats / 2] }
        return paths.indices.map { (median(forward[$0]), median(backward[$0]), median(lowering[$0]), flops) }
    }

    /// One shape's decision: the layers that share it, the paths tried (the rules first, then
    /// those of `ConvolutionPath.named` that run different kernels there), the seconds of each
    /// (forward and backward, summed over the processes that timed them), and the one chosen.
    public struct Choice {
        public let layers: [Conv2d<Float>]
        public let h: Int, w: Int
        public let paths: [ConvolutionPath]
        public let seconds: [Double]
        public let chosen: Int
        public var path: ConvolutionPath { paths[chosen] }
    }

    /// The path to keep: the rules (index 0) unless another is faster by more than `margin`
    /// (a fraction of the rules' time); then the fastest. Timings closer than that are noise
    /// on a shared machine, and flipping on noise would change the rounding from run to run.
    public static func pick(seconds: [Double], margin: Double) -> Int {
        let best = seconds.indices.min { seconds[$0] < seconds[$1] }!
        return seconds[best] < seconds[0] * (1 - margin) ? best : 0
    }

    /// Times every distinct convolution of `net` at n images on each path that runs different
    /// kernels there, lets `agree` combine the timings of all processes (an allreduce sum, so
    /// that every process makes the same choice; the vector has the same length everywhere),
    /// and sets each layer's path to the one `pick` keeps. Call it before the first step.
    /// `measure` replaces the timing (seconds of each path of a layer at h x w), for tests.
    public static func tune(
        _ net: ResNeXt<Float>, n: Int, repeats: Int = 3, margin: Double = 0.05, seed: UInt64 = 1,
        agree: (inout [Double]) -> Void = { _ in },
        measure: ((Conv2d<Float>, Int, Int, [ConvolutionPath]) -> [Double])? = nil
    ) -> [Choice] {
        let groups = net.distinctConvolutions
        var rng = SplitMix64(seed: seed &+ 11)
        var candidates: [[ConvolutionPath]] = [], seconds: [Double] = []
        for group in groups {
            let conv = group.layers[0], saved = conv.path
            var paths: [ConvolutionPath] = [], seen = Set<[Bool]>()
            for (_, path) in ConvolutionPath.named {
                conv.path = path
                if seen.insert(conv.kernels(h: group.h, w: group.w)).inserted { paths.append(path) }
            }
            conv.path = saved
            candidates.append(paths)
            if paths.count > 1, let measure {
                seconds += measure(conv, group.h, group.w, paths)
            } else if paths.count > 1 {
                let t = time(conv, h: group.h, w: group.w, n: n, paths: paths, repeats: repeats, rng: &rng, inputGradient: !group.stem)
                seconds += t.map { $0.forward + $0.backward }
            }
        }
        agree(&seconds)
        var choices: [Choice] = [], at = 0
        for (group, paths) in zip(groups, candidates) {
            let s = paths.count > 1 ? Array(seconds[at..<(at + paths.count)]) : [0]
            if paths.count > 1 { at += paths.count }
            let chosen = pick(seconds: s, margin: margin)
            for conv in group.layers { conv.path = paths[chosen] }
            choices.append(Choice(layers: group.layers, h: group.h, w: group.w, paths: paths, seconds: s, chosen: chosen))
        }
        return choices
    }

    /// The report of a tuning that took `seconds`: a line, then a table with one row per shape,
    /// each path's milliseconds and the one kept.
    public static func report(_ choices: [Choice], processes: Int, seconds: Double) -> String {
        var lines = [
            String(format: "--tune-convolutions: %.1f s before the first step; the paths kept:", seconds),
            "| layer (and those of the same shape) | C -> K, groups, stride, input, kernel | layers | ms forward + backward, each path tried (per process) | kept |",
            "|---|---|---:|---|---|",
        ]
        for c in choices {
            let conv = c.layers[0]
            let tried =
                c.paths.count == 1
                ? "only \(c.paths[0])"
                : zip(c.paths, c.seconds).map {
                    "\($0.0) \(String(format: "%.2f", $0.1 * 1000 / Double(processes)))"
                }.joined(separator: ", ")
            lines.append(
                "| \(conv.name) | \(conv.inChannels) -> \(conv.outChannels), \(conv.groups), \(conv.stride), \(c.h)x\(c.w), \(conv.kernel)x\(conv.kernel) | \(c.layers.count) | \(tried) | \(c.path) |"
            )
        }
        return lines.joined(separator: "\n")
    }
}

extension ResNeXt {
    /// The model's convolutions grouped by shape (channels, kernel, groups, stride, padding and
    /// input size), in order of first appearance; the stem on its own, since it computes no
    /// input gradient.
    public var distinctConvolutions: [(layers: [Conv2d<T>], h: Int, w: Int, stem: Bool)] {
        var groups: [(layers: [Conv2d<T>], h: Int, w: Int, stem: Bool)] = [], index: [[Int]: Int] = [:]
        for (i, (conv, h, w)) in convolutionInputs.enumerated() {
            let key = [conv.inChannels, conv.outChannels, conv.kernel, conv.groups, conv.stride, conv.padding, h, w, i == 0 ? 1 : 0]
            if let g = index[key] {
                groups[g].layers.append(conv)
            } else {
                index[key] = groups.count
                groups.append(([conv], h, w, i == 0))
            }
        }
        return groups
    }
}

extension ResNeXt where T == Float {
    /// Every convolution's path that is not the rules, as "layer=path" separated by ";" (""
    /// when all follow the rules): what a checkpoint records, so that a resumed run takes the
    /// same paths and continues bit for bit.
    public var convolutionPaths: String {
        convolutionInputs.filter { $0.conv.path != .rules }.map { "\($0.conv.name)=\($0.conv.path)" }.joined(separator: ";")
    }

    /// Sets every convolution's path from `convolutionPaths`' text (the layers it does not name
    /// follow the rules); throws on a layer or path it does not know, changing nothing.
    public func setConvolutionPaths(_ text: String) throws {
        var paths: [String: ConvolutionPath] = [:]
        let byName = Dictionary(convolutionInputs.map { ($0.conv.name, $0.conv) }, uniquingKeysWith: { a, _ in a })
        for item in text.split(separator: ";") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, byName[parts[0]] != nil, let path = ConvolutionPath(name: parts[1]) else {
                throw ResNeXtError(
                    "convolution path '\(item)': expected layer=path with one of this model's convolutions and a path among \(ConvolutionPath.named.map(\.name).joined(separator: ", "))"
                )
            }
            paths[parts[0]] = path
        }
        for (conv, _, _) in convolutionInputs { conv.path = paths[conv.name] ?? .rules }
    }
}
