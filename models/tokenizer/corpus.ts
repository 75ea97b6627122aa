/**
 * Small built-in English corpus for training the project's own tiny BPE tokenizers: a few hundred
 * common words plus short text-to-video style prompts, so merges favour words prompts actually use.
 * Changing this text changes every generated tokenizer.json (and so the ids the models were built for).
 */
export const BUILTIN_CORPUS = `
the of and to a in is it you that he was for on are with as i his they be at one have this from or had by
word but what some we can out other were all there when up use your how said an each she which do their
time if will way about many then them write would like so these her long make thing see him two has look
more day could go come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little only round man year
came show every good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air well also play
small end put home read hand port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother world near build self earth
father head stand own page should country found answer school grow study still learn plant cover food sun
four between state keep eye never last let thought city tree cross farm hard start might story saw far sea
draw left late run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river car feet care
second book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure
watch color face wood main enough plain girl usual young ready above ever red list though feel talk bird
soon body dog family direct pose leave song measure door product black short numeral class wind question
happen complete ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit power town fine
a photo of a cat walking on the beach at sunset, cinematic lighting, high quality, 4k
a dog running through a field of flowers in the morning, slow motion, beautiful
a teddy bear playing the guitar in times square, highly detailed
an astronaut riding a horse on the moon, photorealistic, 8k
waves crashing against the rocks near a lighthouse at night, stormy sky
a panda eating bamboo in a green forest, close up shot, soft light
a car driving down a city street in the rain, neon lights, reflections
fireworks exploding over a river, long exposure, colorful, vivid
a woman dancing in the snow, wearing a red dress, film grain
clouds moving over the mountains, time lapse, golden hour, aerial view
a robot walking through a futuristic city, sci-fi, detailed, sharp focus
a cup of coffee with steam rising on a wooden table, macro shot
a man playing the piano in a dark room, dramatic lighting, smooth camera motion
a butterfly landing on a yellow flower, spring, garden, shallow depth of field
a boat sailing on a calm blue ocean, sunny day, wide angle
`;
