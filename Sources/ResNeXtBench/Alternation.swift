import ResNeXt

/// What `bench --alternate` flips between steps: one of the engine's own paths, off (the layers
/// take the other path) and on (the rules), or `tuned`: the rules, then the paths
/// `--tune-convolutions` keeps. It sets the same per-layer settings the tuner sets
/// (`Conv2d.path`, `ResNeXt.readsBN1OnTheFly`), so both settings run in one process and the
/// machine's drift falls on both.
public enum Alternation: String, CaseIterable, Sendable {
    case direct3x3 = "direct3x3", pointwise = "pointwise", rowLowering = "row-lowering", bnOnRead = "bn-on-read", tuned = "tuned"

    /// What "off" and "on" mean, for the printed line.
    public var settings: String {
        switch self {
        case .direct3x3: "off: im2col + GEMM for the 3x3 layers, on: the direct 3x3 kernel"
        case .pointwise: "off: OpenBLAS for the 1x1 products, on: the engine's 1x1 kernel"
        case .rowLowering: "off: the general im2col copy, on: im2col a row at a time"
        case .bnOnRead: "off: bn1's output stored, on: read through bn1 by the 3x3 layers"
        case .tuned: "off: the default paths, on: the tuned ones"
        }
    }

    /// Sets `net` to the setting `on`; `tuned` holds each convolution's tuned path.
    public func set(_ on: Bool, on net: ResNeXt<Float>, tuned: [ConvolutionPath]) {
        let convolutions = net.convolutionInputs.map(\.conv)
        switch self {
        case .direct3x3: for conv in convolutions { conv.path.direct3x3 = on ? nil : false }
        case .pointwise: for conv in convolutions { conv.path.pointwise = on ? nil : false }
        case .rowLowering: for conv in convolutions { conv.path.rowLowering = on ? nil : false }
        case .bnOnRead: net.readsBN1OnTheFly = on
        case .tuned: for (conv, path) in zip(convolutions, tuned) { conv.path = on ? path : .rules }
        }
    }

    /// The setting of step i: warm-ups off, on; then off, on, on, off, off, on, ... so that each
    /// adjacent pair of timed steps holds one of each.
    public static func isOn(step i: Int) -> Bool { i < 2 ? i == 1 : ((i - 2) / 2 + (i - 2)) % 2 == 1 }
}
