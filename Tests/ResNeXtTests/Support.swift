import Foundation
import ResNeXt
import Testing

/// The PyTorch reference tensors: `$RESNEXT_FIXTURES`, else `../shared/fixtures` beside the checkout.
/// Tests that read them fail (they do not skip) when the folder is missing.
enum Fixtures {
    /// One BLAS thread in every test, as in the executables the tests run: results then do not
    /// depend on how the cores are shared.
    static let singleThreaded: Void = setBLASThreads(1)

    static var directory: String {
        _ = singleThreaded
        if let env = ProcessInfo.processInfo.environment["RESNEXT_FIXTURES"], !env.isEmpty { return env }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.deletingLastPathComponent().appendingPathComponent("shared/fixtures").path
    }

    static func file(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: directory + "/" + name)
    }

    /// Every `model_*.safetensors` in the folder (public fixtures and any added later).
    static func modelFiles() throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        return names.filter { $0.hasPrefix("model_") && $0.hasSuffix(".safetensors") }.sorted()
    }
}

/// Relative L2 error |a - b| / |b|, in Double (the fixtures README's measure).
func relativeError<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B]) -> Double {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    if den == 0 { return num.squareRoot() }
    return (num / den).squareRoot()
}

/// (N, C, H*W) -> (C, N, H*W)
func nchwToCnhw<T: BinaryFloatingPoint>(_ x: [T], n: Int, c: Int, hw: Int) -> [T] {
    var y = [T](repeating: 0, count: x.count)
    for i in 0..<n { for j in 0..<c { for k in 0..<hw { y[(j * n + i) * hw + k] = x[(i * c + j) * hw + k] } } }
    return y
}

/// (C, N, H*W) -> (N, C, H*W)
func cnhwToNchw<T: BinaryFloatingPoint>(_ x: [T], n: Int, c: Int, hw: Int) -> [T] {
    var y = [T](repeating: 0, count: x.count)
    for i in 0..<n { for j in 0..<c { for k in 0..<hw { y[(i * c + j) * hw + k] = x[(j * n + i) * hw + k] } } }
    return y
}

func randomArray(_ count: Int, seed: UInt64, scale: Double = 1, offset: Double = 0) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(offset + scale * rng.nextNormal()) }
}

/// Central finite differences of a scalar objective with respect to `count` floats at `x`,
/// on up to `samples` coordinates spread over the tensor, compared with `analytic`.
/// Returns the relative L2 error over the checked coordinates (the README's measure) and how
/// many were checked. Coordinates for which `skip` is true (e.g. next to a ReLU kink) are left out.
func finiteDifferenceError<T: EngineScalar>(
    x: UnsafeMutablePointer<T>, count: Int, analytic: [T], step: T,
    samples: Int = 150, skip: (Int) -> Bool = { _ in false },
    objective: () -> Double
) -> (error: Double, checked: Int) {
    var numeric: [Double] = [], expected: [T] = []
    let stride = max(1, count / samples)
    var i = 0
    while i < count {
        defer { i += stride }
        if skip(i) { continue }
        let saved = x[i]
        x[i] = saved + step
        let plus = objective()
        x[i] = saved - step
        let minus = objective()
        x[i] = saved
        numeric.append((plus - minus) / (2 * Double(step)))
        expected.append(analytic[i])
    }
    return (relativeError(numeric, expected), numeric.count)
}

/// sum(r * y) in Double: the random-projection objective of the gradient checks.
func projection<T: EngineScalar>(_ y: UnsafePointer<T>, _ r: [T]) -> Double {
    var s = 0.0
    for i in r.indices { s += Double(r[i]) * Double(y[i]) }
    return s
}

/// A float32 convolution with its weights (scaled by 0.3), x and dy drawn in that order from
/// `seed`, and buffers for y, dx and its workspace: the setting of the tests that hold one way of
/// computing a convolution against another.
struct ConvolutionCase {
    let conv: Conv2d<Float>
    let store: ParameterStore<Float>
    let x, y, dy, dx, col: Buffer<Float>
    let n, h, w: Int

    init(c: Int, k: Int, kernel: Int, stride: Int = 1, padding: Int, groups: Int, n: Int, h: Int, w: Int, seed: UInt64) {
        var layout = StoreLayout()
        conv = Conv2d<Float>("conv", c, k, kernel: kernel, stride: stride, padding: padding, groups: groups, layout: &layout)
        store = ParameterStore<Float>(layout)
        conv.bind(store)
        let (p, q) = conv.outputSize(h, w)
        var rng = SplitMix64(seed: seed)
        for i in 0..<store.params.count { store.params.base[i] = Float(rng.nextNormal()) * 0.3 }
        x = Buffer<Float>(count: c * n * h * w); dx = Buffer<Float>(count: c * n * h * w)
        y = Buffer<Float>(count: k * n * p * q); dy = Buffer<Float>(count: k * n * p * q)
        for i in 0..<x.count { x.base[i] = Float(rng.nextNormal()) }
        for i in 0..<dy.count { dy.base[i] = Float(rng.nextNormal()) }
        col = Buffer<Float>(count: max(1, conv.columnCount(n: n, h: h, w: w)))
        self.n = n; self.h = h; self.w = w
    }

    func forward() { conv.forward(x: x.base, y: y.base, n: n, h: h, w: w, col: col.base) }

    func backward(accumulate: Bool = false) {
        conv.backward(x: x.base, dy: dy.base, dx: dx.base, accumulate: accumulate, n: n, h: h, w: w, col: col.base)
    }

    /// The weights, without the rest of the store.
    var weights: [Float] { Array(store.params.toArray()[0..<conv.weightCount]) }
    var weightGradient: [Float] { Array(store.grads.toArray()[0..<conv.weightCount]) }
}

/// What a `ConvolutionCase` computes: y, dx written, dx accumulated onto it (so twice dx), and
/// the weight gradient accumulated over both backward passes.
struct ConvolutionResult {
    let y, dx, dxAccumulated, dw: [Float]

    init(_ t: ConvolutionCase) {
        t.forward()
        t.backward()
        dx = t.dx.toArray()
        t.backward(accumulate: true)
        y = t.y.toArray(); dxAccumulated = t.dx.toArray(); dw = t.store.grads.toArray()
    }

    /// Expects every result within float32 rounding (1e-6 relative) of `reference`'s, and
    /// accumulating to add.
    func expectMatches(_ reference: ConvolutionResult, _ label: String) {
        let ref = { (a: [Float]) in a.map(Double.init) }
        #expect(relativeError(y, ref(reference.y)) < 1e-6, "forward \(label)")
        #expect(relativeError(dx, ref(reference.dx)) < 1e-6, "dx \(label)")
        #expect(relativeError(dxAccumulated, ref(reference.dxAccumulated)) < 1e-6, "accumulated dx \(label)")
        #expect(relativeError(dxAccumulated, ref(dx.map { 2 * $0 })) < 1e-6, "accumulate adds \(label)")
        #expect(relativeError(dw, ref(reference.dw)) < 1e-6, "dW \(label)")
    }
}

extension ResNeXt where T == Float {
    /// Moves every gradient by uniform relative noise of size `noise` (another float32 engine's
    /// rounding, or another summation order): g *= 1 + u, u in [-noise, noise]. Nothing with 0.
    func moveGradients(byRelativeNoise noise: Double, _ rng: inout SplitMix64) {
        guard noise > 0 else { return }
        let g = store.grads.base
        for i in 0..<store.parameterCount { g[i] *= Float(1 + noise * (2 * rng.nextUnitDouble() - 1)) }
    }

    /// Parameters and BN statistics by name, in float64 (the counters left out).
    var stateByName: [String: [Double]] {
        var out: [String: [Double]] = [:]
        for e in store.entries where e.kind != .counter { out[e.name] = store.values(e.name)!.map(Double.init) }
        return out
    }
}

/// The largest relative L2 difference over the float tensors of two model files (those whose
/// names pass `include`).
func worstDifference(_ a: String, _ b: String, include: (String) -> Bool = { _ in true }) throws -> (Double, String) {
    let x = try SafeTensorsFile(path: a), y = try SafeTensorsFile(path: b)
    var worst = (0.0, "")
    for name in x.names where x.tensors[name]!.dtype == .f32 && include(name) {
        let e = relativeError(try x.floats(name), try y.doubles(name))
        if e > worst.0 { worst = (e, name) }
    }
    return worst
}
