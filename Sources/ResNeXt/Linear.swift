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
        Profile.measure(.gemm) { T.gemm(transA: true, transB: true, m: n, n: outFeatures, k: inFeatures, alpha: 1, a: x, lda: n,
               b: weight, ldb: inFeatures, beta: 1, c: y, ldc: outFeatures) }
    }

    /// dW (out, in) += dy^T x^T, dB += sum_n dy, dx (in, N) = W^T dy^T (written).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func backward(x: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>?, n: Int) {
        Profile.measure(.gemm) { T.gemm(transA: true, transB: true, m: outFeatures, n: inFeatures, k: n, alpha: 1, a: dy, lda: outFeatures,
               b: x, ldb: n, beta: 1, c: dWeight, ldc: inFeatures) }
        for i in 0..<n {
            for k in 0..<outFeatures { dBias[k] += dy[i * outFeatures + k] }
        }
        if let dx {
            Profile.measure(.gemm) { T.gemm(transA: true, transB: true, m: inFeatures, n: n, k: outFeatures, alpha: 1, a: weight, lda: inFeatures,
                   b: dy, ldb: outFeatures, beta: 0, c: dx, ldc: n) }
        }
    }
}

/// Softmax cross-entropy summed over n rows of logits (N, classes) and divided by `divisor`
/// (the global batch size, so that shards of one batch add up to PyTorch's mean loss).
/// Writes dLogits = (softmax - onehot) / divisor. Returns the loss and the number of rows whose
/// arg-max equals the label.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func softmaxCrossEntropy<T: EngineScalar>(logits: UnsafePointer<T>, labels: UnsafePointer<Int32>, n: Int, classes: Int,
                                divisor: Int, dLogits: UnsafeMutablePointer<T>?) -> (loss: Double, correct: Int) {
    var total = 0.0
    var correct = 0
    let scale = 1 / Double(divisor)
    for i in 0..<n {
        let z = logits + i * classes
        let label = Int(labels[i])
        precondition(label >= 0 && label < classes, "label \(label) outside 0..<\(classes)")
        var zmax = z[0], arg = 0
        for k in 1..<classes where z[k] > zmax { zmax = z[k]; arg = k }
        if arg == label { correct += 1 }
        var sum = 0.0
        for k in 0..<classes { sum += Double.exp(Double(z[k] - zmax)) }
        let logSum = Double.log(sum) + Double(zmax)
        total += logSum - Double(z[label])
        if let dLogits {
            let d = dLogits + i * classes
            for k in 0..<classes {
                let p = Double.exp(Double(z[k]) - logSum)
                d[k] = T((p - (k == label ? 1 : 0)) * scale)
            }
        }
    }
    return (total * scale, correct)
}
