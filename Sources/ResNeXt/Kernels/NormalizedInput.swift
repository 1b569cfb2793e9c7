#if RESNEXT_X86_AVX
    import _Builtin_intrinsics.intel
#endif

/// A batch norm's output with ReLU as a float32 convolution reads it from the norm's input x, so
/// that the output itself is never stored: plane (channel c, image i) of x is read as
/// relu(x * scale + shift), with the factors of c's BN group of image i. These are the float
/// operations of `BatchNorm`'s output pass in the same order, so the values are the same bit for
/// bit. `Conv2d` applies it where it copies its input: `Direct3x3`'s padded planes and
/// `RowLowering`'s rows (`Conv2d.readsNormalizedInput`).
public struct NormalizedInput {
    let scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
    /// BN groups per channel (index c * groups + g), and images per group.
    let groups: Int, groupSize: Int

    /// The same map for the channels from `first` on: a convolution group's channel 0.
    func channels(from first: Int) -> NormalizedInput {
        NormalizedInput(scale: scale + first * groups, shift: shift + first * groups, groups: groups, groupSize: groupSize)
    }

    /// The factors of plane (c, image i).
    @inline(__always) func factors(_ c: Int, _ i: Int) -> (scale: Float, shift: Float) {
        let k = c &* groups &+ i / groupSize
        return (scale[k], shift[k])
    }

    /// v * scale + shift, then the ReLU as `BatchNorm` does it (`relu(_:)`), lane by lane.
    @inline(__always) static func apply(_ v: SIMD8<Float>, _ f: (scale: Float, shift: Float)) -> SIMD8<Float> {
        relu(v * SIMD8(repeating: f.scale) + SIMD8(repeating: f.shift))
    }

    @inline(__always) static func apply(_ v: SIMD16<Float>, _ f: (scale: Float, shift: Float)) -> SIMD16<Float> {
        var r = SIMD16<Float>()
        r.lowHalf = apply(v.lowHalf, f)
        r.highHalf = apply(v.highHalf, f)
        return r
    }

    /// y < 0 ? 0 : y lane by lane, `BatchNorm.relu`: -0 and NaN pass as they are. With AVX one
    /// `vmaxps` with 0 first (it takes the second operand unless the first is greater). The
    /// portable select is the same function and alone compiles to that `vmaxps`, but inside the
    /// lowering loops LLVM turns it into integer compares and blends: 3 % of a 29-4x16d step.
    /// `RESNEXT_X86_AVX` is defined by scripts/build-flags.sh where the target has AVX.
    @inline(__always) static func relu(_ y: SIMD8<Float>) -> SIMD8<Float> {
        #if RESNEXT_X86_AVX
            return _mm256_max_ps(SIMD8(repeating: 0), y)
        #else
            return y.replacing(with: 0, where: y .< 0)
        #endif
    }
}
