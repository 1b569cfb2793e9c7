import Foundation
import ResNeXt
import Testing

@Test func debugStep2FromReferenceState() throws {
    guard ProcessInfo.processInfo.environment["DEBUGFIX"] != nil else { return }
    for name in ["model_29_2x4_b8_g4.safetensors", "model_29_4x4_b16_g16.safetensors"] {
        let c = try ModelCase(name)
        let net = try ResNeXt(c.config, maxBatch: c.batch)
        try net.loadStateDict(c.file, prefix: "step1.", strict: false)
        if let eps = ProcessInfo.processInfo.environment["PERTURB"].flatMap(Double.init) {
            var rng = SplitMix64(seed: 5)
            let p = net.store.params.base
            for i in 0..<net.store.parameterCount { p[i] *= Float(1 + eps * rng.nextNormal()) }
        }
        let input = try c.file.floats("input")
        let labels = try c.file.int64s("labels").map { Int32($0) }
        input.withUnsafeBufferPointer { x in labels.withUnsafeBufferPointer { y in
            net.store.grads.zero()
            net.forward(x.baseAddress!, n: c.batch, mode: .training(bnGroup: c.bnGroup))
            _ = net.loss(labels: y.baseAddress!, n: c.batch)
            net.backward(n: c.batch, bnGroup: c.bnGroup)
        }}
        var worst = 0.0
        for e in net.store.entries where e.kind == .parameter {
            worst = max(worst, relativeError(net.store.gradient(e.name)!, try c.file.floats("step2.grad.\(e.name)")))
        }
        // update error of step 1, relative to the update
        let net2 = try ResNeXt(c.config, maxBatch: c.batch)
        try net2.loadStateDict(c.file, prefix: "init.")
        input.withUnsafeBufferPointer { x in labels.withUnsafeBufferPointer { y in
            net2.trainStep(images: x.baseAddress!, labels: y.baseAddress!, n: c.batch, bnGroup: c.bnGroup, optimizer: c.optimizer)
        }}
        var worstUpdate = 0.0
        for e in net2.store.entries where e.kind == .parameter {
            let ours = net2.store.values(e.name)!, ref = try c.file.floats("step1.\(e.name)"), ini = try c.file.floats("init.\(e.name)")
            var maxUlp: Float = 0; var at = 0
            for i in ours.indices { let u = abs(ours[i] - ref[i]) / ref[i].ulp; if u > maxUlp { maxUlp = u; at = i } }
            if maxUlp > 2 { print("DBG3 \(e.name) maxUlp \(maxUlp) at \(at): ours \(ours[at]) ref \(ref[at]) init \(ini[at]) rel \(relativeError(ours, ref))") }
            worstUpdate = max(worstUpdate, relativeError(zip(ours, ini).map { $0 - $1 }, zip(ref, ini).map { $0 - $1 }))
        }
        print("DBG2 \(name) step2 grads from reference step1 state: worst \(worst); step1 update rel err \(worstUpdate)")
    }
}
