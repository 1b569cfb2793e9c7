import RealModule

/// Fully connected layer with bias, PyTorch's nn.Linear: weight (out, in), bias (out).
/// Input features arrive channel-major, x (in, N) (the pooled activations); logits are (N, out).
public final class Linear<T: EngineScalar> {
    public let inFeatures, outFeatures: Int
    public let name: String
    let weightOffset, biasOffset: Int
    var weight: UnsafeMutablePointer<T>!, bias: UnsafeMutablePointer<T>!
    var dWeight: UnsafeMutablePointer<T>!, dBias: UnsafeMutablePointer<T>!

    public init(_ name: String, _ inFeatures: Int, _ outFeatures: Int, layout: inout StoreLayout) {
        self.name = name
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        weightOffset = layout.add(name + ".weight", [outFeatures, inFeatures], .parameter)
        biasOffset = layout.add(name + ".bias", [outFeatures], .parameter)
    }

    public func bind(_ store: ParameterStore<T>) {
        weight = store.params.base + weightOffset
        bias = store.params.base + biasOffset
        dWeight = store.grads.base + weightOffset
        dBias = store.grads.base + biasOffset
    }

    /// y (N, out) = x^T W^T + b, for x (in, N).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func forward(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, n: Int) {
        for i in 0..<n { (y + i * outFeatures).update(from: bias, count: outFeatures) }
        Profile.measure(.gemm) {
            T.gemm(
                transA: true, transB: true, m: n, n: outFeatures, k: inFeatures, alpha: 1, a: x, lda: n,
                b: weight, ldb: inFeatures, beta: 1, c: y, ldc: outFeatures)
        }
    }

    /// dW (out, in) += dy^T x^T, dB += sum_n dy, dx (in, N) = W^T dy^T (written).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>?, n: Int) {
        Profile.measure(.gemm) {
            T.gemm(
                transA: true, transB: true, m: outFeatures, n: inFeatures, k: n, alpha: 1, a: dy, lda: outFeatures,
                b: x, ldb: n, beta: 1, c: dWeight, ldc: inFeatures)
        }
        for i in 0..<n {
            for k in 0..<outFeatures { dBias[k] += dy[i * outFeatures + k] }
        }
        if let dx {
            Profile.measure(.gemm) {
                T.gemm(
                    transA: true, transB: true, m: inFeatures, n: n, k: outFeatures, alpha: 1, a: weight, lda: inFeatures,
                    b: dy, ldb: outFeatures, beta: 0, c: dx, ldc: n)
            }
        }
    }
}
