import Foundation
import ResNeXt

/// `bench --layers`: each convolution of a model timed on its own, on each path, against the
/// same layers within the step.
public enum LayerTable {
    /// Two tables of `net`'s convolutions, each timed on its own (a copy with random weights and
    /// data, n images), forward then backward with the input gradient; medians over `repeats`.
    /// First each distinct grouped 3x3 and 1x1 stride-1 convolution for each way of computing it
    /// (the paths alternate); then every distinct convolution on the default path with how many layers share
    /// its shape, and their sum: the time the step would spend in convolutions if each ran as it
    /// does alone, against `sgemm` (GFLOP/s): a ceiling on the step's share of SGEMM. Next to it,
    /// what the same layers took within the `steps` timed steps (`inStep`: `Profile.layerSeconds`), where
    /// their operands are what the layers before them left in cache, not a repetition's own.
    /// Last, the in-step figures by kind of convolution, and the step's budget at 70 % of the
    /// SGEMM (the issue's goal): the `step` (seconds, the timed steps' median) scaled from its
    /// `share` of the SGEMM to 70 %.
    public static func render(
        _ net: ResNeXt<Float>, n: Int, repeats: Int, seed: UInt64, sgemm: Double, steps: Int,
        step: Double, share: Double, inStep layerSeconds: [String: Double]
    ) -> String {
        let paths: [(name: String, path: ConvolutionPath)] = [
            ("im2col + GEMM", .openBLAS), ("default", .rules), ("direct, weight gradient too", .directWeights),
            ("winograd F(2x2,3x3)", .winogradKernel),
        ]
        var lines = [
            "| layer | C -> K, groups, stride, input, kernel | path | forward ms | backward ms | of which im2col/col2im ms | GFLOP/s |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        var rng = SplitMix64(seed: seed &+ 7)
        let shapes = net.distinctConvolutions
        let pointwisePaths: [(name: String, path: ConvolutionPath)] = [("OpenBLAS GEMM", .openBLAS), ("default", .rules)]
        for (layers, h, w, _) in shapes {
            let model = layers[0]
            guard (model.kernel == 3 && model.groups > 1) || (model.kernel == 1 && model.stride == 1) else { continue }
            let modelPaths = model.kernel == 1 ? pointwisePaths : paths
            let times = ConvolutionTuner.time(model, h: h, w: w, n: n, paths: modelPaths.map(\.path), repeats: repeats, rng: &rng)
            for (i, path) in modelPaths.enumerated() {
                let t = times[i]
                lines.append(
                    String(
                        format: "| %@ | %@ | %@ | %.2f | %.2f | %.2f | %.1f |", model.name, shapeText(model, h, w),
                        path.name, t.forward * 1000, t.backward * 1000, t.lowering * 1000,
                        t.flops / (t.forward + t.backward) / 1e9))
            }
        }
        lines += [
            "",
            "| layer (and those of the same shape) | C -> K, groups, stride, input, kernel | layers | forward ms | backward ms | ms per step, all of them | GFLOP/s | in the step: ms per step, all of them | GFLOP/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        var total = 0.0, totalFlops = 0.0, totalInStep = 0.0
        var kinds: [(name: String, layers: Int, flops: Double, inStep: Double)] = []
        for (layers, h, w, stem) in shapes {
            let model = layers[0], count = layers.count
            let inStep = layers.reduce(0) { $0 + layerSeconds[$1.name, default: 0] } / Double(steps)
            // as in the step, the stem computes no input gradient
            let t = ConvolutionTuner.time(
                model, h: h, w: w, n: n, paths: [.rules], repeats: repeats, rng: &rng,
                inputGradient: !stem)[0]
            total += Double(count) * (t.forward + t.backward)
            totalFlops += Double(count) * t.flops
            totalInStep += inStep
            let kind = convolutionKind(model, stem: stem)
            if let k = kinds.firstIndex(where: { $0.name == kind }) {
                kinds[k].layers += count; kinds[k].flops += Double(count) * t.flops; kinds[k].inStep += inStep
            } else {
                kinds.append((kind, count, Double(count) * t.flops, inStep))
            }
            lines.append(
                String(
                    format: "| %@ | %@ | %d | %.2f | %.2f | %.1f | %.1f | %.2f | %.1f |", model.name, shapeText(model, h, w),
                    count, t.forward * 1000, t.backward * 1000,
                    Double(count) * (t.forward + t.backward) * 1000, t.flops / (t.forward + t.backward) / 1e9,
                    inStep * 1000, Double(count) * t.flops / inStep / 1e9))
        }
        lines.append(
            String(
                format: "all convolutions, each on its own: %.1f ms per step of %d images, %.1f GFLOP/s, %.0f %% of the SGEMM above",
                total * 1000, n, totalFlops / total / 1e9, 100 * totalFlops / total / 1e9 / sgemm))
        lines.append(
            String(
                format: "the same convolutions within the steps: %.2f ms per step, %.1f GFLOP/s, %.0f %% of the SGEMM above",
                totalInStep * 1000, totalFlops / totalInStep / 1e9, 100 * totalFlops / totalInStep / 1e9 / sgemm))
        lines += [
            "", "| kind of convolution (within the steps) | layers | share of their arithmetic | ms per step | GFLOP/s | share of the SGEMM above |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for k in kinds.sorted(by: { $0.inStep > $1.inStep }) {
            lines.append(
                String(
                    format: "| %@ | %d | %.0f %% | %.1f | %.1f | %.0f %% |", k.name, k.layers, 100 * k.flops / totalFlops,
                    k.inStep * 1000, k.flops / k.inStep / 1e9, 100 * k.flops / k.inStep / 1e9 / sgemm))
        }
        // the step at 70 % of the SGEMM, and what is left of it once the rest of the step is paid
        let target = step * share / 0.7, rest = step - totalInStep
        lines.append(
            String(
                format: "70 %% of the SGEMM above is a step of %.1f ms (these steps: %.1f ms, of which %.1f outside the "
                    + "convolutions); at this rest the convolutions would need %@", target * 1000, step * 1000, rest * 1000,
                target > rest
                    ? String(format: "%.0f %% of the SGEMM", 100 * totalFlops / (target - rest) / 1e9 / sgemm)
                    : "more than all of it: the rest alone is longer"))
        return lines.joined(separator: "\n")
    }

    /// The row of the by-kind table a convolution falls in.
    static func convolutionKind(_ c: Conv2d<Float>, stem: Bool) -> String {
        if stem { return "stem (3x3, no input gradient)" }
        let shape = c.kernel == 1 ? "1x1" : "\(c.kernel)x\(c.kernel)\(c.groups > 1 ? " grouped" : "")"
        return "\(shape), stride \(c.stride)\(c.kernel == 1 && c.stride > 1 ? " (projection shortcuts)" : "")"
    }

    static func shapeText(_ c: Conv2d<Float>, _ h: Int, _ w: Int) -> String {
        "\(c.inChannels) -> \(c.outChannels), \(c.groups), \(c.stride), \(h)x\(w), \(c.kernel)x\(c.kernel)"
    }
}
