/// Stochastic gradient descent with momentum, exactly `torch.optim.SGD` (dampening 0), weight
/// decay on every tensor, one pass over the flat buffers:
///   d = g + wd * p;  buf = momentum * buf + d  (buf starts at 0, so the first step gives buf = d,
///   bit for bit as PyTorch's clone);  d = d + momentum * buf (Nesterov) or d = buf;  p -= lr * d.
public struct SGD: Sendable, Equatable {
    public var learningRate: Double
    public var momentum: Double
    public var weightDecay: Double
    public var nesterov: Bool

    public init(learningRate: Double, momentum: Double = 0.9, weightDecay: Double = 5e-4, nesterov: Bool = true) {
        self.learningRate = learningRate; self.momentum = momentum
        self.weightDecay = weightDecay; self.nesterov = nesterov
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func step<T: EngineScalar>(
        params: UnsafeMutablePointer<T>, grads: UnsafePointer<T>,
        momentumBuffer: UnsafeMutablePointer<T>, count: Int
    ) {
        // hyperparameters rounded to the tensor's type, as PyTorch does
        let lr = T(learningRate), mu = T(momentum), wd = T(weightDecay)
        if nesterov {
            for i in 0..<count {
                let d = grads[i] + wd * params[i]
                let b = mu * momentumBuffer[i] + d
                momentumBuffer[i] = b
                params[i] -= lr * (d + mu * b)
            }
        } else {
            for i in 0..<count {
                let d = grads[i] + wd * params[i]
                let b = mu * momentumBuffer[i] + d
                momentumBuffer[i] = b
                params[i] -= lr * b
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func step<T: EngineScalar>(_ store: ParameterStore<T>) {
        step(
            params: store.params.base, grads: store.grads.base, momentumBuffer: store.momentum.base,
            count: store.parameterCount)
    }
}
