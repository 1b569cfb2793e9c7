import RealModule

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
