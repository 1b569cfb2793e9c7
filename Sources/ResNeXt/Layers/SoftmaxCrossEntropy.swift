import RealModule

/// Softmax cross-entropy summed over n rows of logits (N, classes) and divided by `divisor`
/// (the global batch size, so that shards of one batch add up to PyTorch's mean loss).
/// Writes dLogits = (softmax - onehot) / divisor. Returns the loss and the number of rows whose
/// arg-max equals the label.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func softmaxCrossEntropy<T: EngineScalar>(
    logits: UnsafePointer<T>, labels: UnsafePointer<Int32>, n: Int, classes: Int,
    divisor: Int, dLogits: UnsafeMutablePointer<T>?
) -> (loss: Double, correct: Int) {
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
