import RealModule

/// ReLU in place: x = max(0, x). x has `count` floats.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func reluForward<T: EngineScalar>(_ x: UnsafeMutablePointer<T>, count: Int) {
    for i in 0..<count { x[i] = max(0, x[i]) }
}

/// ReLU backward from its output y: dx = dy where y > 0, else 0 (dx may equal dy).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func reluBackward<T: EngineScalar>(y: UnsafePointer<T>, dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, count: Int) {
    for i in 0..<count { dx[i] = y[i] > 0 ? dy[i] : 0 }
}

/// Residual add: y += x. Its backward hands the same gradient to both branches.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func residualAdd<T: EngineScalar>(_ y: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
}

/// Global average pooling: x (C, N, HW) -> y (C, N).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func globalAveragePoolForward<T: EngineScalar>(x: UnsafePointer<T>, y: UnsafeMutablePointer<T>, c: Int, n: Int, hw: Int) {
    let inv = 1 / T(hw)
    for j in 0..<(c * n) {
        let xs = x + j * hw
        var s: T = 0
        for i in 0..<hw { s = Relaxed.sum(s, xs[i]) }
        y[j] = s * inv
    }
}

/// Global average pooling backward: dx (C, N, HW) = dy (C, N) / HW (written).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func globalAveragePoolBackward<T: EngineScalar>(dy: UnsafePointer<T>, dx: UnsafeMutablePointer<T>, c: Int, n: Int, hw: Int) {
    let inv = 1 / T(hw)
    for j in 0..<(c * n) {
        dx.advanced(by: j * hw).update(repeating: dy[j] * inv, count: hw)
    }
}
